package ai.kimi.linear;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.stream.Collectors;
import org.junit.AfterClass;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Batched decode (issue 14): {@link Batch} next/append/generate equal each session stepped
 * alone (greedy and seeded sampling, per session), sessions leaving a generation at their stop
 * token or limit, all-or-nothing failures, and {@link ModelOptions#maxBatch()}: threads stepping
 * their own sessions of a batching model get the tokens of one thread alone. Environment as
 * KimiLinearTest's (KL_TOKENIZER_MODEL, KL_TINY_MODEL).
 */
public class BatchTest {
    private static final String[] PROMPTS = {"The quick brown fox", "Remember: apple=3", "Sort: 42 7 19"};

    private static Path dir;
    private static Model model;

    @BeforeClass
    public static void loadModel() {
        String value = System.getenv("KL_TOKENIZER_MODEL");
        if (value == null || value.isEmpty()) fail("environment variable KL_TOKENIZER_MODEL is not set");
        dir = Paths.get(value);
        model = Model.load(dir, ModelOptions.defaults().withDevice("cpu").withThreads(2));
    }

    @AfterClass
    public static void closeModel() {
        if (model != null) model.close();
    }

    private static List<Session> prompted(String... prompts) {
        List<Session> sessions = new ArrayList<>();
        for (String p : prompts) {
            Session s = model.newSession();
            s.append(model.tokenize(p, true));
            sessions.add(s);
        }
        return sessions;
    }

    private static void closeAll(List<Session> sessions) {
        sessions.forEach(Session::close);
    }

    /** steps Session.next calls on a fork of s. */
    private static List<Token> alone(Session s, int steps, SamplingParams sampling) {
        try (Session f = s.fork()) {
            List<Token> out = new ArrayList<>();
            for (int i = 0; i < steps; ++i) out.add(f.next(sampling));
            return out;
        }
    }

    private static List<Token> column(List<List<Token>> steps, int i) {
        return steps.stream().map(step -> step.get(i)).collect(Collectors.toList());
    }

    @Test
    public void modelOptionsReachTheLibrary() {
        ModelOptions cpu = ModelOptions.defaults().withDevice("cpu").withThreads(1);
        try (Model m = Model.load(dir, cpu.withMaxBatch(4).withBatchWaitUs(500))) {
            assertTrue(m.info().vocabSize() > 0);
        }
        assertEquals(4, cpu.withMaxBatch(4).maxBatch());
        assertEquals(0, ModelOptions.defaults().maxBatch());
        // Past the library's bounds: its error, so the values reached it.
        KimiLinearException e = assertThrows(KimiLinearException.InvalidArgument.class,
                () -> Model.load(dir, cpu.withMaxBatch(5000)));
        assertTrue(e.getMessage(), e.getMessage().contains("max_batch"));
        e = assertThrows(KimiLinearException.InvalidArgument.class,
                () -> Model.load(dir, cpu.withBatchWaitUs(2_000_000)));
        assertTrue(e.getMessage(), e.getMessage().contains("batch_wait_us"));
        assertThrows(IllegalArgumentException.class, () -> cpu.withMaxBatch(-1));
        assertThrows(IllegalArgumentException.class, () -> cpu.withBatchWaitUs(-1));
    }

    @Test
    public void nextEqualsEachSessionAlone() {
        List<Session> sessions = prompted(PROMPTS);
        try {
            List<List<Token>> want = new ArrayList<>();
            for (Session s : sessions) want.add(alone(s, 6, SamplingParams.greedy()));
            long[] start = sessions.stream().mapToLong(Session::position).toArray();
            Batch batch = new Batch(sessions);
            assertEquals(3, batch.size());
            List<List<Token>> got = new ArrayList<>();
            for (int k = 0; k < 6; ++k) got.add(batch.next());
            for (int i = 0; i < 3; ++i) {
                assertEquals(want.get(i), column(got, i));
                assertEquals(start[i] + 6, sessions.get(i).position());
            }
        } finally {
            closeAll(sessions);
        }
    }

    @Test
    public void samplingPerSession() {
        List<SamplingParams> params = List.of(SamplingParams.greedy(),
                SamplingParams.defaults().withTemperature(0.9f).withSeed(5),
                SamplingParams.defaults().withTemperature(1.0f).withTopK(20).withSeed(9));
        List<Session> sessions = prompted(PROMPTS);
        try {
            List<List<Token>> want = new ArrayList<>();
            for (int i = 0; i < 3; ++i) want.add(alone(sessions.get(i), 8, params.get(i)));
            Batch batch = new Batch(sessions);
            List<List<Token>> got = new ArrayList<>();
            for (int k = 0; k < 8; ++k) got.add(batch.next(params));
            for (int i = 0; i < 3; ++i) assertEquals(want.get(i), column(got, i));
        } finally {
            closeAll(sessions);
        }
    }

    @Test
    public void appendEqualsAppend() {
        List<Session> sessions = prompted(PROMPTS);
        List<Session> forks = sessions.stream().map(Session::fork).collect(Collectors.toList());
        try {
            new Batch(sessions).append(5, 6, 7);
            for (int i = 0; i < 3; ++i) {
                forks.get(i).append(5 + i);
                assertArrayEquals(forks.get(i).tokens(), sessions.get(i).tokens());
                assertEquals(forks.get(i).next(), sessions.get(i).next());
            }
        } finally {
            closeAll(sessions);
            closeAll(forks);
        }
    }

    @Test
    public void sessionsLeaveAtStopTokensAndLimits() {
        List<Session> sessions = prompted(PROMPTS);
        try {
            List<List<Token>> ref = new ArrayList<>();
            for (Session s : sessions) ref.add(alone(s, 10, SamplingParams.greedy()));
            int stop = ref.get(0).get(2).id();
            int[] limits = {10, 7, 2};
            List<List<Integer>> want = new ArrayList<>();
            for (int i = 0; i < 3; ++i) {
                List<Integer> tokens = new ArrayList<>();
                for (Token t : ref.get(i).subList(0, limits[i])) {
                    tokens.add(t.id());
                    if (t.id() == stop) break;
                }
                want.add(tokens);
            }
            long[] start = sessions.stream().mapToLong(Session::position).toArray();
            List<BatchStep> steps = new Batch(sessions)
                    .generate(limits, new int[] {stop}, List.of(SamplingParams.greedy(), SamplingParams.greedy(),
                            SamplingParams.greedy()))
                    .collect(Collectors.toList());
            for (int i = 0; i < 3; ++i) {
                final int index = i;
                List<BatchStep> mine = steps.stream().filter(s -> s.index() == index).collect(Collectors.toList());
                assertEquals(want.get(i), mine.stream().map(BatchStep::token).collect(Collectors.toList()));
                for (BatchStep s : mine.subList(0, mine.size() - 1)) assertNull(s.finishReason());
                BatchStep last = mine.get(mine.size() - 1);
                boolean stopped = last.token() == stop;
                assertEquals(stopped ? FinishReason.STOP_TOKEN : FinishReason.LENGTH, last.finishReason());
                if (stopped) assertEquals("", last.piece());
                assertEquals(start[i] + want.get(i).size(), sessions.get(i).position());
            }
            // Each round is one pass over the sessions still running, in their order.
            List<Integer> order = new ArrayList<>();
            for (int r = 0; r < 10; ++r)
                for (int i = 0; i < 3; ++i)
                    if (want.get(i).size() > r) order.add(i);
            assertEquals(order, steps.stream().map(BatchStep::index).collect(Collectors.toList()));
            assertEquals(0, new Batch(sessions).generate(0, new int[0], SamplingParams.greedy()).count());
        } finally {
            closeAll(sessions);
        }
    }

    @Test
    public void generateTextEqualsNextAlone() {
        List<Session> sessions = prompted(PROMPTS);
        try {
            List<SamplingParams> params = new ArrayList<>();
            List<List<Token>> want = new ArrayList<>();
            for (int i = 0; i < 3; ++i) {
                params.add(SamplingParams.defaults().withTemperature(0.7f).withSeed(i));
                want.add(alone(sessions.get(i), 5, params.get(i)));
            }
            List<BatchStep> steps = new Batch(sessions).generate(new int[] {5, 5, 5}, new int[0], params)
                    .collect(Collectors.toList());
            for (int i = 0; i < 3; ++i) {
                final int index = i;
                assertEquals(want.get(i), steps.stream().filter(s -> s.index() == index)
                        .map(s -> new Token(s.token(), s.piece())).collect(Collectors.toList()));
            }
        } finally {
            closeAll(sessions);
        }
    }

    @Test
    public void aFailedStepChangesNoSession() {
        int[] ids = model.tokenize(PROMPTS[0], true);
        Session full = model.newSession(ids.length);
        full.append(ids);
        List<Session> sessions = prompted(PROMPTS[1], PROMPTS[2]);
        sessions.add(full);
        try {
            List<int[]> before = sessions.stream().map(Session::tokens).collect(Collectors.toList());
            Batch batch = new Batch(sessions);
            List<Runnable> calls = List.of(batch::next, () -> batch.append(1, 2, 3),
                    () -> batch.generate(4, new int[0], SamplingParams.greedy()).count());
            for (Runnable call : calls) {
                KimiLinearException e = assertThrows(KimiLinearException.ContextFull.class, call::run);
                assertTrue(e.getMessage(), e.getMessage().contains("sessions[2]"));
                for (int i = 0; i < 3; ++i) assertArrayEquals(before.get(i), sessions.get(i).tokens());
            }
            assertEquals(2, new Batch(sessions.subList(0, 2)).next().size()); // the others step on
        } finally {
            closeAll(sessions);
        }
    }

    @Test
    public void badBatchesAreRefused() {
        List<Session> sessions = prompted(PROMPTS[0], PROMPTS[1]);
        Session a = sessions.get(0);
        Session b = sessions.get(1);
        try (Session empty = model.newSession()) {
            long[] start = {a.position(), b.position()};
            KimiLinearException e = assertThrows(KimiLinearException.InvalidArgument.class,
                    () -> new Batch(a, b, a).next());
            assertTrue(e.getMessage(), e.getMessage().contains("same session"));
            e = assertThrows(KimiLinearException.InvalidArgument.class, () -> new Batch(a, empty).next());
            assertTrue(e.getMessage(), e.getMessage().contains("sessions[1]"));
            e = assertThrows(KimiLinearException.InvalidArgument.class,
                    () -> new Batch(a, b).append(1, model.info().vocabSize()));
            assertTrue(e.getMessage(), e.getMessage().contains("out of range"));
            assertThrows(KimiLinearException.InvalidArgument.class, () -> new Batch(List.of()));
            assertThrows(KimiLinearException.InvalidArgument.class,
                    () -> new Batch(a, b).next(List.of(SamplingParams.greedy())));
            assertThrows(KimiLinearException.InvalidArgument.class, () -> new Batch(a, b).append(1));
            assertThrows(KimiLinearException.InvalidArgument.class,
                    () -> new Batch(a, b).next(SamplingParams.defaults().withTemperature(-1f)));
            assertEquals(start[0], a.position());
            assertEquals(start[1], b.position());
            Session closed = model.newSession();
            closed.close();
            assertThrows(IllegalStateException.class, () -> new Batch(a, closed).next());
        } finally {
            closeAll(sessions);
        }
    }

    @Test
    public void aPendingCancelFailsTheBatchAndIsConsumed() {
        List<Session> sessions = prompted(PROMPTS[0], PROMPTS[1]);
        try {
            List<Token> want = List.of(alone(sessions.get(0), 1, SamplingParams.greedy()).get(0),
                    alone(sessions.get(1), 1, SamplingParams.greedy()).get(0));
            long[] start = sessions.stream().mapToLong(Session::position).toArray();
            sessions.get(1).cancel();
            Batch batch = new Batch(sessions);
            KimiLinearException e = assertThrows(KimiLinearException.Cancelled.class, batch::next);
            assertTrue(e.getMessage(), e.getMessage().contains("sessions[1]"));
            assertArrayEquals(start, sessions.stream().mapToLong(Session::position).toArray());
            assertEquals(want, batch.next());
        } finally {
            closeAll(sessions);
        }
    }

    @Test
    public void threadsOnABatchingModelGetTheirOwnTokens() throws Exception {
        int n = 3;
        List<List<Token>> want = new ArrayList<>();
        for (String p : PROMPTS)
            try (Session s = prompted(p).get(0)) {
                want.add(alone(s, 12, SamplingParams.greedy()));
            }
        try (Model batching = Model.load(dir,
                ModelOptions.defaults().withDevice("cpu").withThreads(2).withMaxBatch(n).withBatchWaitUs(2000))) {
            List<List<Token>> got = new ArrayList<>(Arrays.asList(null, null, null));
            List<Throwable> errors = new ArrayList<>();
            CyclicBarrier start = new CyclicBarrier(n);
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < n; ++t) {
                final int i = t;
                threads.add(new Thread(() -> {
                    try (Session s = batching.newSession()) {
                        s.append(batching.tokenize(PROMPTS[i], true));
                        start.await();
                        List<Token> tokens = new ArrayList<>();
                        for (int k = 0; k < 12; ++k) tokens.add(s.next());
                        synchronized (got) {
                            got.set(i, tokens);
                        }
                    } catch (Throwable e) {
                        synchronized (errors) {
                            errors.add(e);
                        }
                    }
                }));
            }
            threads.forEach(Thread::start);
            for (Thread t : threads) t.join();
            assertTrue(errors.toString(), errors.isEmpty());
            assertEquals(want, got);
        }
    }
}
