package ai.kimi.linear;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.AfterClass;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * What a chat app needs from generation (issue 13 item 5): finish reasons, log-probabilities,
 * logit bias and logits processor, the token history, the end-of-turn token and
 * {@link Conversation}. Environment as KimiLinearTest's (KL_TOKENIZER_MODEL).
 */
public class ChatGenerationTest {
    private static final String PROMPT = "Once upon a time";

    private static Model model;

    @BeforeClass
    public static void loadModel() {
        String dir = System.getenv("KL_TOKENIZER_MODEL");
        if (dir == null || dir.isEmpty()) fail("environment variable KL_TOKENIZER_MODEL is not set");
        Path path = Paths.get(dir);
        model = Model.load(path, ModelOptions.defaults().withDevice("cpu").withThreads(2));
    }

    @AfterClass
    public static void closeModel() {
        if (model != null) model.close();
    }

    private static GenerateOptions.Builder options(int maxNewTokens) {
        return GenerateOptions.builder().maxNewTokens(maxNewTokens);
    }

    private static Session prompted() {
        Session s = model.newSession();
        s.append(model.tokenize(PROMPT, true));
        return s;
    }

    /** Reads a generation to its end; its token ids. */
    private static int[] ids(Generation g) {
        g.forEachRemaining(piece -> {});
        return g.tokens().stream().mapToInt(Token::id).toArray();
    }

    private static int[] greedy(int n) {
        try (Session s = prompted()) {
            return ids(s.generate(options(n).build()));
        }
    }

    // ---- finish reasons --------------------------------------------------------------------

    @Test
    public void finishReasonOfEachEnd() {
        int[] expected = greedy(4);
        try (Session s = prompted()) {
            Generation g = s.generate(options(4).build());
            assertNull("no reason while it runs", g.finishReason());
            assertArrayEquals(expected, ids(g));
            assertEquals(FinishReason.LENGTH, g.finishReason());
        }
        try (Session s = prompted()) {
            Generation g = s.generate(options(10).stopTokens(expected[1]).build());
            assertArrayEquals(Arrays.copyOf(expected, 2), ids(g)); // the stop token is appended
            assertEquals(FinishReason.STOP_TOKEN, g.finishReason());
        }
        try (Session s = prompted()) {
            Generation g = s.generate(options(4).build());
            s.cancel(); // after generate (which drops an older request): stops the first step
            assertThrows(KimiLinearException.Cancelled.class, g::hasNext);
            assertEquals(FinishReason.CANCELLED, g.finishReason());
            assertEquals(0, g.tokens().size());
        }
    }

    @Test
    public void publisherReportsTheFinishReason() throws Exception {
        try (Session s = prompted()) {
            GenerationPublisher publisher = s.publish(options(3).build());
            AsyncAndProgressTest.Recorder r = new AsyncAndProgressTest.Recorder(100);
            publisher.subscribe(r);
            publisher.finished().get(30, TimeUnit.SECONDS);
            assertTrue("onComplete", r.terminated.await(30, TimeUnit.SECONDS) && r.completed);
            assertEquals(FinishReason.LENGTH, publisher.finishReason());
            assertArrayEquals(greedy(3), publisher.tokens().stream().mapToInt(Token::id).toArray());
        }
        try (Session s = prompted()) {
            GenerationPublisher publisher = s.publish(options(100000).build());
            AsyncAndProgressTest.Recorder r = new AsyncAndProgressTest.Recorder(1);
            r.onEachPiece = rec -> rec.subscription.cancel();
            publisher.subscribe(r);
            publisher.finished().get(30, TimeUnit.SECONDS);
            assertEquals("its cancel() stopped it", FinishReason.CANCELLED, publisher.finishReason());
        }
    }

    // ---- log-probabilities -----------------------------------------------------------------

    @Test
    public void tokensCarryLogprobsWhenAsked() {
        int[] prompt = model.tokenize(PROMPT, true);
        float[] logits;
        try (Session s = model.newSession()) {
            logits = s.appendWithLogits(prompt);
        }
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (float x : logits) max = Math.max(max, x);
        for (float x : logits) sum += Math.exp(x - max);
        double logZ = max + Math.log(sum);

        try (Session s = prompted()) {
            Generation g = s.generate(options(3).topLogprobs(5).build());
            int[] got = ids(g);
            assertArrayEquals(greedy(3), got);
            Token first = g.tokens().get(0);
            assertEquals(logits[first.id()] - logZ, first.logprob(), 1e-3);
            for (Token t : g.tokens()) {
                assertEquals(5, t.top().size());
                assertEquals("greedy: the token is the most likely", t.id(), t.top().get(0).token());
                assertEquals(t.logprob(), t.top().get(0).logprob(), 0f);
                for (int i = 1; i < 5; ++i)
                    assertTrue("most likely first", t.top().get(i - 1).logprob() >= t.top().get(i).logprob());
                assertTrue(t.logprob() <= 0f);
            }
        }
        try (Session s = prompted()) {
            Generation g = s.generate(options(2).logprobs(true).build());
            ids(g);
            assertTrue(g.tokens().get(0).logprob() <= 0f);
            assertEquals(List.of(), g.tokens().get(0).top());
        }
        try (Session s = prompted()) {
            Generation g = s.generate(options(2).build());
            ids(g);
            assertTrue("not asked: NaN", Float.isNaN(g.tokens().get(0).logprob()));
        }
        assertThrows(IllegalArgumentException.class, () -> options(1).topLogprobs(21));
        assertThrows(IllegalArgumentException.class, () -> options(1).topLogprobs(-1));
    }

    // ---- logit bias and logits processor ---------------------------------------------------

    @Test
    public void banningTheGreedyTokenChangesTheFirstToken() {
        int first = greedy(1)[0];
        try (Session s = prompted()) {
            int[] got = ids(s.generate(options(1).logitBias(Map.of(first, Float.NEGATIVE_INFINITY)).build()));
            assertNotEquals(first, got[0]);
        }
        try (Session s = prompted()) {
            assertThrows(KimiLinearException.InvalidArgument.class,
                    () -> s.generate(options(1).logitBias(Map.of(model.info().vocabSize(), 1f)).build()));
            assertThrows(KimiLinearException.InvalidArgument.class,
                    () -> s.generate(options(1).logitBias(Map.of(first, Float.NaN)).build()));
            assertArrayEquals("a failed generate changed nothing", model.tokenize(PROMPT, true), s.tokens());
        }
    }

    @Test
    public void aProcessorThatChangesNothingGivesTheSameTokensAndSeesTheHistory() {
        int[] expected = greedy(5);
        int[] prompt = model.tokenize(PROMPT, true);
        List<int[]> histories = new ArrayList<>();
        AtomicInteger capacity = new AtomicInteger();
        try (Session s = prompted()) {
            Generation g = s.generate(options(5).logitsProcessor((logits, history) -> {
                capacity.set(logits.capacity());
                histories.add(history);
                return false;
            }).build());
            assertArrayEquals(expected, ids(g));
            assertEquals(FinishReason.LENGTH, g.finishReason());
        }
        assertEquals(model.info().vocabSize(), capacity.get());
        assertEquals(5, histories.size());
        assertArrayEquals(prompt, histories.get(0));
        int[] second = Arrays.copyOf(prompt, prompt.length + 1);
        second[prompt.length] = expected[0];
        assertArrayEquals(second, histories.get(1));
    }

    @Test
    public void aProcessorWritesTheLogits() {
        int first = greedy(1)[0];
        try (Session s = prompted()) {
            int[] got = ids(s.generate(options(1).logitsProcessor((logits, history) -> {
                logits.put(first, Float.NEGATIVE_INFINITY);
                return false;
            }).build()));
            assertNotEquals(first, got[0]);
        }
    }

    @Test
    public void aProcessorReturningTrueEndsWithCallback() {
        try (Session s = prompted()) {
            long before = s.position();
            Generation g = s.generate(options(5).logitsProcessor((logits, history) -> history.length > before).build());
            assertArrayEquals(Arrays.copyOf(greedy(1), 1), ids(g));
            assertEquals(FinishReason.CALLBACK, g.finishReason());
            assertEquals(before + 1, s.position());
        }
    }

    @Test
    public void aProcessorsExceptionReachesTheCaller() {
        IllegalStateException boom = new IllegalStateException("boom");
        try (Session s = prompted()) {
            long before = s.position();
            Generation g = s.generate(options(5).logitsProcessor((logits, history) -> {
                throw boom;
            }).build());
            IllegalStateException thrown = assertThrows(IllegalStateException.class, g::hasNext);
            assertSame(boom, thrown);
            assertEquals(FinishReason.ERROR, g.finishReason());
            assertEquals("nothing appended", before, s.position());
            assertArrayEquals("the session goes on", greedy(2), ids(s.generate(options(2).build())));
        }
    }

    // ---- history and end of turn -----------------------------------------------------------

    @Test
    public void tokensAreThePromptAndTheGenerated() {
        int[] prompt = model.tokenize(PROMPT, true);
        try (Session s = prompted()) {
            assertArrayEquals(prompt, s.tokens());
            int[] generated = ids(s.generate(options(4).build()));
            int[] all = Arrays.copyOf(prompt, prompt.length + generated.length);
            System.arraycopy(generated, 0, all, prompt.length, generated.length);
            assertArrayEquals(all, s.tokens());
            assertEquals(all.length, s.position());
            try (Session fork = s.fork()) {
                assertArrayEquals(all, fork.tokens());
            }
            s.reset();
            assertArrayEquals(new int[0], s.tokens());
        }
    }

    @Test
    public void chatStopsAtTheEndOfTurnToken() {
        int eot = model.info().eotToken();
        assertArrayEquals(new int[] {eot}, model.tokenize("<|im_end|>", true));
        List<ChatMessage> chat = List.of(ChatMessage.user("Hi"));
        try (Session s = model.newSession()) {
            // The bias makes <|im_end|> the first token: chat() stops there without being told.
            Generation g = s.chat(chat, options(8).logitBias(Map.of(eot, 1e4f)).build());
            assertEquals("", String.join("", (Iterable<String>) () -> g));
            assertEquals(FinishReason.STOP_TOKEN, g.finishReason());
            int[] prompt = model.tokenizeChat(chat, true);
            int[] expected = Arrays.copyOf(prompt, prompt.length + 1);
            expected[prompt.length] = eot;
            assertArrayEquals(expected, s.tokens());
        }
    }

    // ---- Conversation ----------------------------------------------------------------------

    private static int[] fresh(List<ChatMessage> messages, GenerateOptions options) {
        try (Session s = model.newSession()) {
            return ids(s.chat(messages, options));
        }
    }

    @Test
    public void aConversationAppendsOnlyTheNewTokens() {
        GenerateOptions options = options(4).build();
        List<ChatMessage> start = List.of(ChatMessage.system("Be brief."));
        try (Conversation chat = new Conversation(model, start, options, 0, 4)) {
            Generation first = chat.say("Sort: 3 1 2");
            List<ChatMessage> asked = List.of(start.get(0), ChatMessage.user("Sort: 3 1 2"));
            // The first prompt is the whole conversation in the chat format.
            assertArrayEquals(model.tokenizeChat(asked, true), chat.session().tokens());
            assertEquals(chat.session().position(), chat.prefilled());
            assertArrayEquals("the same as a fresh session's reply", fresh(asked, options), ids(first));

            int[] before = chat.tokens(); // recorded: the reply closed by <|im_end|>
            assertEquals(model.info().eotToken(), before[before.length - 1]);
            long sessionBefore = chat.session().position();
            long prefilledBefore = chat.prefilled();
            Generation second = chat.say("Add: 2 + 2");
            int[] now = chat.session().tokens();
            long added = chat.session().position() - before.length;
            assertArrayEquals("the history is kept, not read again", before, Arrays.copyOf(now, before.length));
            assertEquals(added + (before.length - sessionBefore), chat.prefilled() - prefilledBefore);
            int[] message = model.tokenizeChat(List.of(ChatMessage.system(""), ChatMessage.user("Add: 2 + 2")), true);
            int[] empty = model.tokenizeChat(List.of(ChatMessage.system("")), false);
            assertEquals("the new message and the assistant's opening only", message.length - empty.length, added);
            ids(second);
            assertEquals(5, chat.messages().size());
            assertEquals("assistant", chat.messages().get(4).role());
            assertEquals(second.text(), chat.messages().get(4).content());
        }
    }

    @Test
    public void regenerateAndEditGiveWhatAFreshSessionGives() {
        GenerateOptions options = options(5).build();
        List<ChatMessage> start = List.of(ChatMessage.system("Be brief."));
        try (Conversation chat = new Conversation(model, start, options, 0, 4)) {
            int[] reply = ids(chat.say("Sort: 3 1 2"));
            long prefilled = chat.prefilled();
            Generation again = chat.regenerate();
            assertEquals("restored from the kept state: nothing read again", prefilled, chat.prefilled());
            assertArrayEquals("greedy again", reply, ids(again));
            assertEquals(3, chat.messages().size());

            // Sampled, then regenerated with another seed: a fresh session with that seed agrees.
            GenerateOptions sampled = options(5).sampling(SamplingParams.defaults().withTemperature(1.0f).withSeed(7)).build();
            int[] regenerated = ids(chat.regenerate(sampled));
            List<ChatMessage> asked = List.of(start.get(0), ChatMessage.user("Sort: 3 1 2"));
            assertArrayEquals(fresh(asked, sampled), regenerated);

            chat.edit(1, "Sort: 9 8");
            int[] edited = ids(chat.reply());
            List<ChatMessage> editedChat = List.of(start.get(0), ChatMessage.user("Sort: 9 8"));
            assertArrayEquals(fresh(editedChat, options), edited);
            assertEquals(editedChat.get(1), chat.messages().get(1));
        }
    }

    @Test
    public void aConversationNeedsAChatFormat() {
        String dir = System.getenv("KL_TINY_MODEL");
        if (dir == null || dir.isEmpty()) fail("environment variable KL_TINY_MODEL is not set");
        try (Model m = Model.load(Paths.get(dir), "cpu", 1)) {
            assertEquals(-1, m.info().eotToken());
            assertThrows(IllegalArgumentException.class, () -> new Conversation(m, List.of()));
        }
    }
}
