package ai.kimi.linear;

import ai.kimi.linear.internal.SWIGTYPE_p_klb_batch;
import ai.kimi.linear.internal.kimi_linear_native;
import ai.kimi.linear.internal.kl_sampling_params;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.Set;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * Distinct sessions of one model stepped together ({@code kl_batch_next} /
 * {@code kl_batch_append}): each {@link #next} samples every session's next token with its own
 * {@link SamplingParams} and appends them all in ONE forward pass (the weights are read once for
 * the whole batch). The tokens and sessions afterwards are those of one {@link Session#next} per
 * session (on the CPU to float rounding).
 *
 * <p>All or nothing: a call that fails (a session busy, without logits or at a full context, a
 * token out of range, the same session twice, sessions of two models: the message names
 * {@code sessions[i]}) changes no session. A {@link Session#cancel()} pending on any session
 * fails the call with {@link KimiLinearException.Cancelled} and is consumed. The batch owns
 * nothing: the sessions stay ordinary sessions (close them as usual; a closed one makes the
 * calls throw {@link IllegalStateException}).
 */
public final class Batch {
    private final List<Session> sessions;
    private byte[] piece = new byte[256];

    public Batch(List<Session> sessions) {
        Objects.requireNonNull(sessions, "sessions");
        for (Session s : sessions) Objects.requireNonNull(s, "a session of the batch is null");
        if (sessions.isEmpty()) throw new KimiLinearException.InvalidArgument("a batch needs at least one session");
        this.sessions = List.copyOf(sessions);
    }

    public Batch(Session... sessions) {
        this(Arrays.asList(sessions));
    }

    /** The sessions, in the order of the results. */
    public List<Session> sessions() {
        return sessions;
    }

    public int size() {
        return sessions.size();
    }

    /** {@link #next(List)} with greedy sampling for every session. */
    public List<Token> next() {
        return next(SamplingParams.defaults());
    }

    /** {@link #next(List)} with the same sampling parameters for every session (each draws from its own seed and position). */
    public List<Token> next(SamplingParams sampling) {
        Objects.requireNonNull(sampling, "sampling");
        return next(Collections.nCopies(sessions.size(), sampling));
    }

    /**
     * Samples each session's next token with {@code sampling.get(i)}, appends them all in one
     * pass and returns them with the text each completes, in the sessions' order (as
     * {@link Session#next} returns them).
     */
    public List<Token> next(List<SamplingParams> sampling) {
        checkOnePerSession(sampling, "sampling");
        return step(sessions, sampling);
    }

    /** Appends {@code tokens[i]} to session i (one token each) in one pass. */
    public void append(int... tokens) {
        Objects.requireNonNull(tokens, "tokens");
        if (tokens.length != sessions.size())
            throw new KimiLinearException.InvalidArgument("tokens holds " + tokens.length + " tokens for "
                    + sessions.size() + " sessions: one token per session");
        run(sessions, List.of(), batch -> kimi_linear_native.klb_batch_append(batch, tokens));
    }

    /** {@link #generate(int[], int[], List)} with one limit and one {@link SamplingParams} for all. */
    public Stream<BatchStep> generate(int maxNewTokens, int[] stopTokens, SamplingParams sampling) {
        Objects.requireNonNull(sampling, "sampling");
        int[] limits = new int[sessions.size()];
        Arrays.fill(limits, maxNewTokens);
        return generate(limits, stopTokens, Collections.nCopies(sessions.size(), sampling));
    }

    /**
     * Streams a continuation of every session, lazily: per step, one {@link BatchStep} for each
     * session still running, each step one {@link #next(List)} over those sessions. A session
     * leaves the batch when it samples one of {@code stopTokens} (appended; its step says
     * {@link FinishReason#STOP_TOKEN} and has an empty piece) or has appended
     * {@code maxNewTokens[i]} tokens (its last step says {@link FinishReason#LENGTH}); the others
     * go on. A failing step throws from the stream with no session changed by it (what earlier
     * steps appended stays). Append the prompts first.
     */
    public Stream<BatchStep> generate(int[] maxNewTokens, int[] stopTokens, List<SamplingParams> sampling) {
        Objects.requireNonNull(maxNewTokens, "maxNewTokens");
        Objects.requireNonNull(stopTokens, "stopTokens");
        if (maxNewTokens.length != sessions.size())
            throw new KimiLinearException.InvalidArgument("maxNewTokens holds " + maxNewTokens.length
                    + " limits for " + sessions.size() + " sessions");
        for (int limit : maxNewTokens)
            if (limit < 0) throw new IllegalArgumentException("maxNewTokens < 0");
        checkOnePerSession(sampling, "sampling");
        Set<Integer> stops = new HashSet<>();
        for (int t : stopTokens) stops.add(t);
        Iterator<BatchStep> steps = new Steps(maxNewTokens.clone(), stops, List.copyOf(sampling));
        return StreamSupport.stream(
                Spliterators.spliteratorUnknownSize(steps, Spliterator.ORDERED | Spliterator.NONNULL), false);
    }

    /** The steps of a generation: one {@link #step} over the running sessions per round. */
    private final class Steps implements Iterator<BatchStep> {
        private final int[] limits;
        private final int[] generated;
        private final Set<Integer> stops;
        private final List<SamplingParams> sampling;
        private List<Integer> running = new ArrayList<>();
        private final List<BatchStep> ready = new ArrayList<>();
        private int nextReady;

        Steps(int[] limits, Set<Integer> stops, List<SamplingParams> sampling) {
            this.limits = limits;
            this.generated = new int[limits.length];
            this.stops = stops;
            this.sampling = sampling;
            for (int i = 0; i < limits.length; ++i)
                if (limits[i] > 0) running.add(i);
        }

        @Override
        public boolean hasNext() {
            if (nextReady < ready.size()) return true;
            if (running.isEmpty()) return false;
            List<Session> members = new ArrayList<>(running.size());
            List<SamplingParams> params = new ArrayList<>(running.size());
            for (int i : running) {
                members.add(sessions.get(i));
                params.add(sampling.get(i));
            }
            List<Token> tokens = step(members, params);
            ready.clear();
            nextReady = 0;
            List<Integer> still = new ArrayList<>();
            for (int k = 0; k < running.size(); ++k) {
                int i = running.get(k);
                Token t = tokens.get(k);
                generated[i] += 1;
                if (stops.contains(t.id())) {
                    ready.add(new BatchStep(i, t.id(), "", FinishReason.STOP_TOKEN));
                } else if (generated[i] >= limits[i]) {
                    ready.add(new BatchStep(i, t.id(), t.piece(), FinishReason.LENGTH));
                } else {
                    ready.add(new BatchStep(i, t.id(), t.piece(), null));
                    still.add(i);
                }
            }
            running = still;
            return true;
        }

        @Override
        public BatchStep next() {
            if (!hasNext()) throw new NoSuchElementException();
            return ready.get(nextReady++);
        }
    }

    private void checkOnePerSession(List<SamplingParams> sampling, String what) {
        Objects.requireNonNull(sampling, what);
        if (sampling.size() != sessions.size())
            throw new KimiLinearException.InvalidArgument(what + " holds " + sampling.size()
                    + " SamplingParams for " + sessions.size() + " sessions: one per session");
        for (SamplingParams p : sampling) Objects.requireNonNull(p, "a SamplingParams of " + what + " is null");
    }

    /** One kl_batch_next over members with their sampling parameters. */
    private List<Token> step(List<Session> members, List<SamplingParams> sampling) {
        List<Token> out = new ArrayList<>(members.size());
        run(members, sampling, batch -> {
            kimi_linear_native.klb_batch_next(batch);
            for (int i = 0; i < members.size(); ++i) {
                long n = kimi_linear_native.klb_batch_piece(batch, i, piece);
                if (n < 0) {
                    piece = new byte[Model.checkedSize(-n)];
                    n = kimi_linear_native.klb_batch_piece(batch, i, piece);
                }
                out.add(new Token(kimi_linear_native.klb_batch_token(batch, i),
                        new String(piece, 0, (int) n, StandardCharsets.UTF_8)));
            }
        });
        return out;
    }

    /**
     * Runs call on a klb_batch of members (sampling: one per member, or empty for none) with
     * each session held for the call (a close on another thread waits for it).
     */
    private static void run(List<Session> members, List<SamplingParams> sampling,
                            java.util.function.Consumer<SWIGTYPE_p_klb_batch> call) {
        int held = 0;
        SWIGTYPE_p_klb_batch batch = null;
        kl_sampling_params params = new kl_sampling_params();
        try {
            for (Session s : members) {
                s.acquire();
                ++held;
            }
            batch = kimi_linear_native.klb_batch_create(members.size());
            for (int i = 0; i < members.size(); ++i) {
                kl_sampling_params p = null;
                if (!sampling.isEmpty()) {
                    sampling.get(i).copyTo(params);
                    p = params;
                }
                kimi_linear_native.klb_batch_set(batch, i, members.get(i).handle(), p);
            }
            call.accept(batch);
        } finally {
            kimi_linear_native.klb_batch_free(batch);
            params.delete();
            for (int i = 0; i < held; ++i) members.get(i).release();
        }
    }
}
