using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using KimiLinear.Internal;

namespace KimiLinear
{
    /// <summary>
    /// Distinct sessions of one model stepped together (<c>kl_batch_next</c> /
    /// <c>kl_batch_append</c>): each <see cref="Next(SamplingParams)"/> samples every session's next
    /// token with its own <see cref="SamplingParams"/> and appends them all in ONE forward pass
    /// (the weights are read once for the whole batch). The tokens and sessions afterwards are
    /// those of one <see cref="Session.Next"/> per session (on the CPU to float rounding).
    /// </summary>
    /// <remarks>
    /// All or nothing: a call that fails (a session busy, without logits or at a full context, a
    /// token out of range, the same session twice, sessions of two models: the message names
    /// <c>sessions[i]</c>) changes no session. A <see cref="Session.Cancel"/> pending on any session
    /// fails the call with KimiLinearException.Cancelled and is consumed. The batch owns nothing:
    /// the sessions stay ordinary sessions (dispose them as usual; a disposed one makes the calls
    /// throw ObjectDisposedException).
    /// </remarks>
    public sealed class Batch
    {
        private static readonly IReadOnlyList<TokenLogprob> NoAlternatives = new TokenLogprob[0];

        private readonly Session[] sessions;
        private byte[] piece = new byte[256];

        public Batch(IEnumerable<Session> sessions)
        {
            if (sessions == null) throw new ArgumentNullException(nameof(sessions));
            this.sessions = sessions.ToArray();
            if (this.sessions.Any(s => s == null)) throw new ArgumentNullException(nameof(sessions), "a session of the batch is null");
            if (this.sessions.Length == 0) throw new KimiLinearException.InvalidArgument("a batch needs at least one session");
        }

        public Batch(params Session[] sessions) : this((IEnumerable<Session>)sessions) { }

        /// <summary>The sessions, in the order of the results.</summary>
        public IReadOnlyList<Session> Sessions
        {
            get { return sessions; }
        }

        public int Count
        {
            get { return sessions.Length; }
        }

        /// <summary>
        /// Samples each session's next token (the same parameters for all, each drawing from its
        /// own seed and position; default: greedy), appends them all in one pass and returns
        /// them with the text each completes, in the sessions' order (as Session.Next returns them;
        /// a step without log-probabilities: Logprob NaN, no TopLogprobs).
        /// </summary>
        public IReadOnlyList<GenerationStep> Next(SamplingParams sampling = null)
        {
            return Next(Enumerable.Repeat(sampling ?? new SamplingParams(), sessions.Length).ToArray());
        }

        /// <summary><see cref="Next(SamplingParams)"/> with one SamplingParams per session (null: greedy).</summary>
        public IReadOnlyList<GenerationStep> Next(IReadOnlyList<SamplingParams> sampling)
        {
            CheckOnePerSession(sampling);
            return Step(sessions, sampling);
        }

        /// <summary>Appends tokens[i] to session i (one token each) in one pass.</summary>
        public void Append(int[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException(nameof(tokens));
            if (tokens.Length != sessions.Length)
                throw new KimiLinearException.InvalidArgument("tokens holds " + tokens.Length + " tokens for " +
                                                              sessions.Length + " sessions: one token per session");
            Run(sessions, null, batch => kimi_linear_native.klb_batch_append(batch, tokens, (ulong)tokens.Length));
        }

        /// <summary>
        /// <see cref="Generate(int[], int[], IReadOnlyList{SamplingParams})"/> with one limit and one
        /// SamplingParams (default: greedy) for every session.
        /// </summary>
        public IEnumerable<BatchStep> Generate(int maxNewTokens = 128, int[] stopTokens = null, SamplingParams sampling = null)
        {
            return Generate(Enumerable.Repeat(maxNewTokens, sessions.Length).ToArray(), stopTokens,
                            Enumerable.Repeat(sampling ?? new SamplingParams(), sessions.Length).ToArray());
        }

        /// <summary>
        /// Streams a continuation of every session, lazily: per step, one <see cref="BatchStep"/> for
        /// each session still running, each step one <see cref="Next(IReadOnlyList{SamplingParams})"/>
        /// over those sessions. A session leaves the batch when it samples one of stopTokens
        /// (appended; its step says FinishReason.StopToken and has an empty piece) or has appended
        /// maxNewTokens[i] tokens (its last step says FinishReason.Length); the others go on. A
        /// failing step throws from MoveNext with no session changed by it (what earlier steps
        /// appended stays). Append the prompts first. The arguments are checked now.
        /// </summary>
        public IEnumerable<BatchStep> Generate(int[] maxNewTokens, int[] stopTokens, IReadOnlyList<SamplingParams> sampling)
        {
            if (maxNewTokens == null) throw new ArgumentNullException(nameof(maxNewTokens));
            if (maxNewTokens.Length != sessions.Length)
                throw new KimiLinearException.InvalidArgument("maxNewTokens holds " + maxNewTokens.Length + " limits for " +
                                                              sessions.Length + " sessions");
            if (maxNewTokens.Any(limit => limit < 0))
                throw new ArgumentOutOfRangeException(nameof(maxNewTokens), "a limit is negative");
            CheckOnePerSession(sampling);
            return Steps((int[])maxNewTokens.Clone(), new HashSet<int>(stopTokens ?? new int[0]), sampling.ToArray());
        }

        private IEnumerable<BatchStep> Steps(int[] limits, HashSet<int> stops, SamplingParams[] sampling)
        {
            var generated = new int[limits.Length];
            List<int> running = Enumerable.Range(0, limits.Length).Where(i => limits[i] > 0).ToList();
            while (running.Count > 0)
            {
                IReadOnlyList<GenerationStep> tokens =
                    Step(running.Select(i => sessions[i]).ToArray(), running.Select(i => sampling[i]).ToArray());
                var still = new List<int>();
                for (int k = 0; k < running.Count; ++k)
                {
                    int i = running[k];
                    int token = tokens[k].Token;
                    string text = tokens[k].Piece;
                    generated[i] += 1;
                    if (stops.Contains(token))
                    {
                        yield return new BatchStep(i, token, "", FinishReason.StopToken);
                    }
                    else if (generated[i] >= limits[i])
                    {
                        yield return new BatchStep(i, token, text, FinishReason.Length);
                    }
                    else
                    {
                        yield return new BatchStep(i, token, text, null);
                        still.Add(i);
                    }
                }
                running = still;
            }
        }

        private void CheckOnePerSession(IReadOnlyList<SamplingParams> sampling)
        {
            if (sampling == null) throw new ArgumentNullException(nameof(sampling));
            if (sampling.Count != sessions.Length)
                throw new KimiLinearException.InvalidArgument("sampling holds " + sampling.Count + " SamplingParams for " +
                                                              sessions.Length + " sessions: one per session");
        }

        /// <summary>One kl_batch_next over members with their sampling parameters.</summary>
        private IReadOnlyList<GenerationStep> Step(Session[] members, IReadOnlyList<SamplingParams> sampling)
        {
            var results = new GenerationStep[members.Length];
            Run(members, sampling, batch =>
            {
                kimi_linear_native.klb_batch_next(batch);
                for (int i = 0; i < members.Length; ++i)
                {
                    long n = kimi_linear_native.klb_batch_piece(batch, (ulong)i, piece, (ulong)piece.Length);
                    if (n < 0)
                    {
                        piece = new byte[Native.ArrayLength(-n)];
                        n = kimi_linear_native.klb_batch_piece(batch, (ulong)i, piece, (ulong)piece.Length);
                    }
                    results[i] = new GenerationStep(kimi_linear_native.klb_batch_token(batch, (ulong)i),
                                                    n == 0 ? "" : Encoding.UTF8.GetString(piece, 0, (int)n),
                                                    float.NaN, NoAlternatives);
                }
            });
            return Array.AsReadOnly(results);
        }

        /// <summary>
        /// Runs call on a klb_batch of members (sampling: one per member, null entries greedy; or
        /// null for none) with each session held for the call (a Dispose on another thread waits).
        /// </summary>
        private static void Run(Session[] members, IReadOnlyList<SamplingParams> sampling, Action<SWIGTYPE_p_klb_batch> call)
        {
            var pointers = new IntPtr[members.Length];
            int held = 0;
            SWIGTYPE_p_klb_batch batch = null;
            try
            {
                for (; held < members.Length; ++held) pointers[held] = members[held].Handle.Hold(nameof(Session));
                Native.Call(() =>
                {
                    batch = kimi_linear_native.klb_batch_create((ulong)members.Length);
                    for (int i = 0; i < members.Length; ++i)
                    {
                        SamplingParams s = sampling?[i];
                        using (kl_sampling_params p = s?.ToNative())
                            kimi_linear_native.klb_batch_set(batch, (ulong)i, Native.Session(pointers[i]), p);
                    }
                    call(batch);
                });
            }
            finally
            {
                if (batch != null) kimi_linear_native.klb_batch_free(batch);
                for (int i = 0; i < held; ++i) members[i].Handle.DangerousRelease();
            }
        }
    }
}
