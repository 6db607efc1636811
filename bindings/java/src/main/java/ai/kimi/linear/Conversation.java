package ai.kimi.linear;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * A chat with a model held in one {@link Session}. Each turn appends only its new tokens (the
 * new messages in the chat format and the assistant's opening), so the history is never read
 * again; a reply is the tokens the model generates, closed by the end-of-turn token
 * ({@link ModelInfo#eotToken()}, {@code <|im_end|>}), at which generation stops. Editing or
 * regenerating an earlier turn restores the longest kept state whose tokens are a prefix of
 * the new conversation's and appends the rest: states (session forks) are kept where each
 * reply starts and ends, the last {@code keepStates} of them (each costs a session's memory).
 *
 * <pre>{@code
 * try (Conversation chat = new Conversation(model, List.of(ChatMessage.system("Be brief.")))) {
 *     chat.say("Hi!").forEachRemaining(System.out::print);
 *     Generation again = chat.regenerate(options);   // the last reply, redone
 * }
 * }</pre>
 *
 * A reply is recorded as an assistant message (its text, its tokens) when its
 * {@link Generation} is closed: at its end, on a failure, by {@code close()}, or by the next call
 * on the conversation. Used by one thread at a time.
 */
public final class Conversation implements AutoCloseable {
    // A system message with no content: the tokens of a message rendered after it are that
    // message's alone (a format's default system message comes only before a first message).
    private static final ChatMessage EMPTY_SYSTEM = ChatMessage.system("");

    private record Kept(int[] tokens, Session state) {}

    private final Model model;
    private final long maxContext;
    private final int keepStates;
    private final GenerateOptions defaults;
    private final int eot;
    private final int emptyLength;
    private final int[] opening; // the assistant's opening, after a message
    private final List<ChatMessage> messages = new ArrayList<>();
    private final List<int[]> segments = new ArrayList<>(); // each message's tokens
    private final List<Kept> kept = new ArrayList<>();
    private Session session;
    private Generation current; // the reply not yet recorded
    private long prefilled;

    /** A conversation starting with {@code messages}, replies with {@code GenerateOptions.defaults()}. */
    public Conversation(Model model, List<ChatMessage> messages) {
        this(model, messages, GenerateOptions.defaults(), 0, 4);
    }

    /**
     * @param defaults the options of {@link #reply()} and {@link #say(String)} (the end-of-turn
     *     token is added to their stop tokens)
     * @param maxContext each session's capacity (0: the model's default)
     * @param keepStates how many states to keep for edits and regenerations (>= 1)
     * @throws IllegalArgumentException for a model without a chat format
     */
    public Conversation(Model model, List<ChatMessage> messages, GenerateOptions defaults, long maxContext,
            int keepStates) {
        this.model = Objects.requireNonNull(model, "model");
        this.defaults = Objects.requireNonNull(defaults, "defaults");
        if (keepStates < 1) throw new IllegalArgumentException("keepStates is " + keepStates + ", must be >= 1");
        if (maxContext < 0) throw new IllegalArgumentException("maxContext < 0");
        this.keepStates = keepStates;
        this.maxContext = maxContext;
        this.eot = model.info().eotToken();
        if (eot < 0) throw new IllegalArgumentException("this model has no chat format (no end-of-turn token)");
        int[] empty = model.tokenizeChat(List.of(EMPTY_SYSTEM), false);
        this.emptyLength = empty.length;
        int[] withOpening = model.tokenizeChat(List.of(EMPTY_SYSTEM), true);
        this.opening = Arrays.copyOfRange(withOpening, empty.length, withOpening.length);
        for (ChatMessage m : messages) addMessage(m);
        this.session = model.newSession(maxContext);
    }

    /** Frees the session and the kept states (records a reply still open first). Idempotent. */
    @Override
    public void close() {
        try {
            finishReply();
        } finally {
            for (Kept k : kept) k.state().close();
            kept.clear();
            session.close();
        }
    }

    /** The conversation so far (a copy). */
    public List<ChatMessage> messages() {
        finishReply();
        return List.copyOf(messages);
    }

    /** The session holding the conversation (read it; changing it confuses the conversation). */
    public Session session() {
        return session;
    }

    /** The conversation's tokens: each message's, the replies as generated. */
    public int[] tokens() {
        finishReply();
        return concat(segments);
    }

    /** The tokens appended as prompts so far (what was read, not generated). */
    public long prefilled() {
        return prefilled;
    }

    /** Adds a message without replying (e.g. a tool's result); nothing runs yet. */
    public void add(ChatMessage message) {
        finishReply();
        addMessage(Objects.requireNonNull(message, "message"));
    }

    /** Adds a user message and streams the reply with the default options. */
    public Generation say(String content) {
        return say(content, defaults);
    }

    /** Adds a user message and streams the reply with {@code options}. */
    public Generation say(String content, GenerateOptions options) {
        add(ChatMessage.user(content));
        return reply(options);
    }

    /** Streams the assistant's reply to the conversation so far, with the default options. */
    public Generation reply() {
        return reply(defaults);
    }

    /**
     * Streams the assistant's reply to the conversation so far: the session is brought to the
     * conversation's tokens and the assistant's opening (appending only what it lacks), and
     * generates until the end-of-turn token or the options' other rules. The reply is recorded
     * when the generation is closed (it closes itself at its end).
     */
    public Generation reply(GenerateOptions options) {
        GenerateOptions turn = Session.withEndOfTurn(model.info(), Objects.requireNonNull(options, "options"));
        finishReply();
        int[] history = concat(segments);
        int[] prompt = Arrays.copyOf(history, history.length + opening.length);
        System.arraycopy(opening, 0, prompt, history.length, opening.length);
        restore(prompt);
        keep();
        Generation generation = session.generate(turn);
        generation.onEnd(() -> record(generation, history.length));
        current = generation;
        return generation;
    }

    /** {@link #regenerate(GenerateOptions)} with the default options. */
    public Generation regenerate() {
        return regenerate(defaults);
    }

    /**
     * Drops the last message if it is the assistant's and replies again: from the state kept
     * where that reply started, nothing is read again.
     */
    public Generation regenerate(GenerateOptions options) {
        finishReply();
        int last = messages.size() - 1;
        if (last >= 0 && messages.get(last).role().equals("assistant")) {
            messages.remove(last);
            segments.remove(last);
        }
        return reply(options);
    }

    /**
     * Changes message {@code index}'s content and drops the messages after it (a chat UI's
     * edit); {@link #reply()} then answers it, restoring the longest kept state that fits.
     */
    public void edit(int index, String content) {
        finishReply();
        Objects.checkIndex(index, messages.size());
        String role = messages.get(index).role();
        messages.subList(index, messages.size()).clear();
        segments.subList(index, segments.size()).clear();
        addMessage(new ChatMessage(role, content));
    }

    // ---- inside ------------------------------------------------------------------------------

    private void addMessage(ChatMessage message) {
        int[] segment;
        if (messages.isEmpty()) { // the first: with the format's default system message, if any
            segment = model.tokenizeChat(List.of(message), false);
        } else { // its tokens alone: after an empty system message, minus that
            int[] t = model.tokenizeChat(List.of(EMPTY_SYSTEM, message), false);
            segment = Arrays.copyOfRange(t, emptyLength, t.length);
        }
        messages.add(message);
        segments.add(segment);
    }

    /** Closes the reply still open, which records it. */
    private void finishReply() {
        Generation open = current;
        current = null;
        if (open != null) open.close();
    }

    /** Records a reply that ended: closes its turn with the end-of-turn token when it ended another way. */
    private void record(Generation generation, int historyLength) {
        if (current == generation) current = null;
        int[] tokens = session.tokens();
        if (tokens.length == 0 || tokens[tokens.length - 1] != eot) {
            session.append(eot);
            prefilled += 1;
            tokens = Arrays.copyOf(tokens, tokens.length + 1);
            tokens[tokens.length - 1] = eot;
        }
        messages.add(ChatMessage.assistant(generation.text()));
        segments.add(Arrays.copyOfRange(tokens, historyLength, tokens.length));
        keep();
    }

    /**
     * Makes the session hold exactly {@code target}: appends to it when its tokens are a prefix,
     * else starts from the longest kept prefix (or an empty session) and appends the rest.
     */
    private void restore(int[] target) {
        int[] have = session.tokens();
        if (!isPrefix(have, target)) {
            Kept best = null;
            for (Kept k : kept)
                if (isPrefix(k.tokens(), target) && (best == null || k.tokens().length > best.tokens().length))
                    best = k;
            Session fresh = best != null ? best.state().fork() : model.newSession(maxContext);
            session.close();
            session = fresh;
            have = best != null ? best.tokens() : new int[0];
        }
        if (target.length > have.length) {
            session.append(Arrays.copyOfRange(target, have.length, target.length));
            prefilled += target.length - have.length;
        }
    }

    private void keep() {
        kept.add(new Kept(session.tokens(), session.fork()));
        while (kept.size() > keepStates) kept.remove(0).state().close();
    }

    private static boolean isPrefix(int[] prefix, int[] of) {
        return prefix.length <= of.length && Arrays.equals(prefix, 0, prefix.length, of, 0, prefix.length);
    }

    private static int[] concat(List<int[]> parts) {
        int n = 0;
        for (int[] p : parts) n += p.length;
        int[] out = new int[n];
        int at = 0;
        for (int[] p : parts) {
            System.arraycopy(p, 0, out, at, p.length);
            at += p.length;
        }
        return out;
    }
}
