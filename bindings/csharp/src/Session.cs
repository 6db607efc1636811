using System;
using System.Collections.Generic;
using System.Text;
using System.Threading;
using KimiLinear.Internal;

namespace KimiLinear
{
    /// <summary>
    /// One conversation's state (KDA and conv states, MLA cache) over a <see cref="Model"/>.
    /// </summary>
    /// <remarks>
    /// A session is used by one thread at a time, except <see cref="Cancel"/> and
    /// <see cref="ClearCancel"/>, which any thread may call; a call while another runs throws
    /// KimiLinearException.Busy (and changes nothing). A failed call changes nothing: position, state and last logits are as before.
    /// Dispose it when done; a finalizer (its SafeHandle) frees one that never was. It stays
    /// usable after its model is disposed. Use after Dispose throws ObjectDisposedException.
    /// </remarks>
    public sealed class Session : IDisposable
    {
        /// <summary>The token of the last entry of GenerateTokens that carries held-back text only (KL_NO_TOKEN).</summary>
        public const int NoToken = -1;

        private readonly SessionHandle handle;
        private byte[] piece = new byte[256]; // kl_session_next's text buffer, grown on demand

        internal Session(SessionHandle handle, Model model)
        {
            this.handle = handle;
            Model = model;
            VocabSize = model.Info.VocabSize;
        }

        /// <summary>The native session's handle, for calls on several sessions at once (<see cref="Batch"/>).</summary>
        internal SessionHandle Handle
        {
            get { return handle; }
        }

        /// <summary>The model this session runs (it may be disposed: the session keeps what it needs).</summary>
        public Model Model { get; }

        /// <summary>The model's vocabulary size: the length of a logits row.</summary>
        public int VocabSize { get; }

        /// <summary>True once disposed.</summary>
        public bool IsDisposed
        {
            get { return handle.IsClosed; }
        }

        /// <summary>Tokens consumed so far.</summary>
        public ulong Position
        {
            get { return Use(s => kimi_linear_native.klb_session_position(s)); }
        }

        /// <summary>
        /// Runs tokens through the model at the current position (a prefill when there are
        /// several, a decode step for one). The last token's logits are kept for sampling.
        /// </summary>
        /// <exception cref="KimiLinearException.InvalidArgument">no tokens, or a token id outside the vocabulary</exception>
        /// <exception cref="KimiLinearException.ContextFull">the session cannot hold the tokens</exception>
        public void Append(int[] tokens)
        {
            CheckTokens(tokens);
            Use(s => kimi_linear_native.klb_session_append(s, tokens, (ulong)tokens.Length, kl_logits.KL_LOGITS_NONE,
                                                           null, 0, (uint)VocabSize));
        }

        /// <summary><see cref="Append"/> that also returns the last token's logits (VocabSize floats).</summary>
        public float[] AppendWithLogits(int[] tokens)
        {
            CheckTokens(tokens);
            float[] logits = new float[VocabSize];
            Use(s => kimi_linear_native.klb_session_append(s, tokens, (ulong)tokens.Length, kl_logits.KL_LOGITS_LAST,
                                                           logits, (ulong)logits.Length, (uint)VocabSize));
            return logits;
        }

        /// <summary><see cref="Append"/> that returns every token's logits, row after row (tokens.Length * VocabSize floats).</summary>
        public float[] AppendWithAllLogits(int[] tokens)
        {
            CheckTokens(tokens);
            float[] logits = new float[Native.ArrayLength((long)tokens.Length * VocabSize)];
            Use(s => kimi_linear_native.klb_session_append(s, tokens, (ulong)tokens.Length, kl_logits.KL_LOGITS_ALL,
                                                           logits, (ulong)logits.Length, (uint)VocabSize));
            return logits;
        }

        /// <summary>
        /// The token ids consumed so far, in order (Position of them): the prompts, what was
        /// appended and what was generated (kl_session_tokens).
        /// </summary>
        public int[] Tokens
        {
            get
            {
                return Use(s =>
                {
                    int[] ids = new int[Native.ArrayLength((long)kimi_linear_native.klb_session_position(s))];
                    for (;;)
                    {
                        long n = kimi_linear_native.klb_session_tokens(s, ids, (ulong)ids.Length);
                        if (n >= 0)
                        {
                            if (n != ids.Length) Array.Resize(ref ids, (int)n);
                            return ids;
                        }
                        ids = new int[Native.ArrayLength(-n)];
                    }
                });
            }
        }

        /// <summary>Back to position 0, all state zero, no last logits.</summary>
        public void Reset()
        {
            Use(s =>
            {
                kimi_linear_native.kl_session_reset(s);
                return true;
            });
        }

        /// <summary>An independent deep copy of the whole state (cheap prefix reuse). Dispose it too.</summary>
        public Session Fork()
        {
            return Use(s => new Session(new SessionHandle(Native.Pointer(kimi_linear_native.klb_session_fork(s))),
                                        Model));
        }

        /// <summary>A versioned, checksummed snapshot of the state, for <see cref="LoadState"/>.</summary>
        public byte[] SaveState()
        {
            return Use(s =>
            {
                byte[] buf = new byte[Native.ArrayLength((long)kimi_linear_native.klb_session_state_size(s))];
                for (;;)
                {
                    long n = kimi_linear_native.klb_session_state_save(s, buf, (ulong)buf.Length);
                    if (n >= 0)
                    {
                        if (n != buf.Length) Array.Resize(ref buf, (int)n);
                        return buf;
                    }
                    buf = new byte[Native.ArrayLength(-n)];
                }
            });
        }

        /// <summary>Restores a snapshot of <see cref="SaveState"/>.</summary>
        /// <exception cref="KimiLinearException">another model's, a corrupt or a truncated snapshot (the session is untouched then)</exception>
        public void LoadState(byte[] snapshot)
        {
            if (snapshot == null) throw new ArgumentNullException(nameof(snapshot));
            Use(s =>
            {
                kimi_linear_native.kl_session_state_load(s, snapshot, (ulong)snapshot.Length);
                return true;
            });
        }

        /// <summary>
        /// Cancels: the running call on this session, or else the next one, among Append, Next
        /// and the steps of a Generate/GenerateTokens enumeration, throws
        /// KimiLinearException.Cancelled (the state as before it) and consumes the request, so a
        /// cancel is never lost between two steps of a stream. A request pending when
        /// Generate/GenerateTokens is called (or an enumeration after the first starts) is
        /// dropped: it was aimed at what ran before; so is one pending at Reset or ClearCancel.
        /// Any thread (the C rule: kl_session_cancel). On a disposed session it does nothing: a
        /// stop button may race with the session's end.
        /// </summary>
        public void Cancel()
        {
            try
            {
                Use(s =>
                {
                    kimi_linear_native.kl_session_cancel(s);
                    return true;
                });
            }
            catch (ObjectDisposedException)
            {
            }
        }

        /// <summary>
        /// Drops a pending <see cref="Cancel"/> request. Call it when a new request starts, so that
        /// a cancel that arrived after the previous one ended cannot stop it. Any thread; nothing
        /// on a disposed session.
        /// </summary>
        public void ClearCancel()
        {
            try
            {
                Use(s =>
                {
                    kimi_linear_native.kl_session_clear_cancel(s);
                    return true;
                });
            }
            catch (ObjectDisposedException)
            {
            }
        }

        /// <summary>A token sampled from the last logits, not appended (default: greedy).</summary>
        public int Sample(SamplingParams sampling = null)
        {
            using (kl_sampling_params p = (sampling ?? new SamplingParams()).ToNative())
                return Use(s => kimi_linear_native.klb_session_sample(s, p));
        }

        /// <summary>
        /// Samples the next token from the last logits (default: greedy), appends it and returns
        /// it with the text it completes (kl_session_next): whole UTF-8 characters, possibly
        /// empty (an unfinished character is held in the session until a later token completes
        /// it); always empty for a model without a tokenizer. Append a prompt first.
        /// </summary>
        public (int Token, string Piece) Next(SamplingParams sampling = null)
        {
            using (kl_sampling_params p = (sampling ?? new SamplingParams()).ToNative())
            {
                return Use(s =>
                {
                    for (;;)
                    {
                        int token;
                        long n = kimi_linear_native.klb_session_next(s, p, piece, (ulong)piece.Length, out token);
                        if (n >= 0) return (token, n == 0 ? "" : Encoding.UTF8.GetString(piece, 0, (int)n));
                        piece = new byte[Native.ArrayLength(-n)]; // nothing was appended: again, with room
                    }
                });
            }
        }

        /// <summary>
        /// Generates text, pulled one token at a time as the sequence is read (lazy), with
        /// kl_session_generate's rules: one piece per generated token (possibly empty), until
        /// MaxNewTokens, a stop token (appended, not emitted) or a stop string (the text before
        /// it is emitted; it and anything after are not, though the tokens that made them are
        /// appended). Text that may start a stop string is held back until it cannot; text still
        /// held when generation ends another way comes as one last piece (an unfinished character
        /// as U+FFFD). Append a prompt first. A failure surfaces from MoveNext and ends the
        /// enumeration; the tokens already generated stay appended.
        /// </summary>
        /// <exception cref="KimiLinearException.InvalidArgument">an empty or ill-formed stop string, or one with a NUL character (thrown at once)</exception>
        /// <exception cref="KimiLinearException.Unsupported">stop strings on a model without a tokenizer (thrown at once)</exception>
        public Generation Generate(GenerateOptions options = null)
        {
            return new Generation(GenerateTokens(options)); // GenerateTokens checks the options now
        }

        /// <summary>
        /// A chat turn: appends <paramref name="messages"/> in the model's chat format with the
        /// assistant's opening (<see cref="Model.TokenizeChat"/>) and <see cref="Generate"/>s the
        /// reply (one enumeration), which ends at the end-of-turn token
        /// (<see cref="ModelInfo.EotToken"/>, added to the options' stop tokens) as well as by the
        /// options' rules. For a conversation that goes on, see <see cref="Conversation"/>.
        /// </summary>
        public Generation Chat(IEnumerable<ChatMessage> messages, GenerateOptions options = null)
        {
            int[] prompt = Model.TokenizeChat(messages, true);
            GenerateOptions turn = WithEndOfTurn(Model.Info, options ?? new GenerateOptions());
            Append(prompt);
            return Generate(turn);
        }

        /// <summary>A copy of options with the end-of-turn token among the stop tokens (when the model has one).</summary>
        internal static GenerateOptions WithEndOfTurn(ModelInfo info, GenerateOptions options)
        {
            GenerateOptions turn = options.Clone();
            if (info.EotToken >= 0 && !turn.StopTokens.Contains(info.EotToken)) turn.StopTokens.Add(info.EotToken);
            return turn;
        }

        /// <summary>
        /// <see cref="Generate"/> read asynchronously, each step one native call on the thread
        /// pool: <c>await foreach (var piece in session.GenerateAsync(options, token))</c> with
        /// C# 8, or a loop on <c>await e.MoveNextAsync()</c> (see <see cref="AsyncGeneration"/>).
        /// The options are checked and the first generator made now. Cancelling
        /// <paramref name="cancellationToken"/> cancels the step in flight
        /// (OperationCanceledException); disposing the enumerator frees the generator after the
        /// step in flight returns and leaves no cancel request pending.
        /// </summary>
        public AsyncGeneration GenerateAsync(GenerateOptions options = null,
                                             CancellationToken cancellationToken = default(CancellationToken))
        {
            return new AsyncGeneration(this, Generate(options), cancellationToken);
        }

        /// <summary>
        /// <see cref="Generate"/> with the token of each piece: exactly what kl_session_generate
        /// passes its callback. One entry per generated token except a stop token, with the text
        /// it releases (after the stop-string rules), and, when text was still held back at the
        /// end, one last entry (<see cref="NoToken"/>, that text). Lazy, like Generate: each
        /// enumeration is one generation by the C library's generator (kl_generator_*), the
        /// first one's made here, which checks the options; an
        /// IEnumerable&lt;(int Token, string Piece)&gt; (see <see cref="GeneratedTokens"/> for
        /// why the return type is a class).
        /// </summary>
        public GeneratedTokens GenerateTokens(GenerateOptions options = null)
        {
            var spec = new GeneratorSpec(options ?? new GenerateOptions());
            GeneratorHandle first = NewGenerator(spec); // checks the options
            var run = new GenerationRun();
            return new GeneratedTokens(Steps(() => System.Threading.Interlocked.Exchange(ref first, null) ??
                                                   NewGenerator(spec), run), run);
        }

        /// <summary>
        /// <see cref="Generate"/> for <see cref="Conversation"/>: read once (a second enumeration
        /// throws InvalidOperationException); onEnd runs when that enumeration ends.
        /// </summary>
        internal Generation GenerateOnce(GenerateOptions options, Action onEnd)
        {
            var spec = new GeneratorSpec(options);
            GeneratorHandle first = NewGenerator(spec);
            var run = new GenerationRun { OnEnd = onEnd };
            // Once ended (its hook run), a reply cannot start: it was recorded.
            Func<GeneratorHandle> take = () => (run.OnEnd != null ? System.Threading.Interlocked.Exchange(ref first, null) : null) ??
                                               throw new InvalidOperationException("a reply is read once");
            return new Generation(new GeneratedTokens(Steps(take, run), run));
        }

        /// <summary>
        /// One enumeration: steps a generator until the generation ends, passing on what
        /// kl_session_generate passes its callback: a token's text (even empty); on the ending
        /// step without a token, or with a stop token, only text still held back (NoToken). It
        /// records in run why it ended and the tokens appended. The generator is freed at the
        /// end, on a failure and on the enumerator's Dispose; then run's end hook runs.
        /// </summary>
        private IEnumerable<(int, string)> Steps(Func<GeneratorHandle> take, GenerationRun run)
        {
            try
            {
                using (GeneratorHandle generator = take())
                {
                    run.Start(generator);
                    while (run.FinishReason == null)
                    {
                        int token;
                        try
                        {
                            // The step runs on this session: hold it too (a concurrent Dispose waits).
                            token = Use(s => generator.Use("generation", g => kimi_linear_native.klb_generator_next(Native.Generator(g))));
                            generator.Processor?.Rethrow();
                        }
                        catch (KimiLinearException.Cancelled)
                        {
                            run.FinishReason = FinishReason.Cancelled;
                            throw;
                        }
                        catch (Exception)
                        {
                            run.FinishReason = FinishReason.Error;
                            throw;
                        }
                        kl_end_reason end = kl_end_reason.KL_END_NONE;
                        string piece = generator.Use("generation", g =>
                        {
                            SWIGTYPE_p_klb_generator gen = Native.Generator(g);
                            end = kimi_linear_native.klb_generator_end(gen);
                            string text = Model.ReadText((buf, cap) => kimi_linear_native.klb_generator_piece(gen, buf, cap), 256);
                            if (token != NoToken) run.Steps.Add(ReadStep(gen, token, text, generator.TopLogprobs));
                            return text;
                        });
                        run.FinishReason = FinishReasonOf(end);
                        bool tokenPiece = token != NoToken && end != kl_end_reason.KL_END_STOP_TOKEN;
                        if (tokenPiece || piece.Length > 0)
                        {
                            run.Text.Append(piece);
                            yield return (tokenPiece ? token : NoToken, piece);
                        }
                    }
                }
            }
            finally
            {
                run.End();
            }
        }

        private static GenerationStep ReadStep(SWIGTYPE_p_klb_generator gen, int token, string piece, int topLogprobs)
        {
            if (topLogprobs < 0) return new GenerationStep(token, piece, float.NaN, new TokenLogprob[0]);
            float logprob = kimi_linear_native.klb_generator_logprob(gen);
            var top = new TokenLogprob[0];
            if (topLogprobs > 0)
            {
                int[] ids = new int[topLogprobs];
                float[] logprobs = new float[topLogprobs];
                long n = kimi_linear_native.klb_generator_top(gen, ids, (ulong)ids.Length, logprobs, (ulong)logprobs.Length);
                top = new TokenLogprob[Math.Max(n, 0)];
                for (int i = 0; i < top.Length; ++i) top[i] = new TokenLogprob(ids[i], logprobs[i]);
            }
            return new GenerationStep(token, piece, logprob, top);
        }

        private static FinishReason? FinishReasonOf(kl_end_reason end)
        {
            switch (end)
            {
                case kl_end_reason.KL_END_NONE: return null;
                case kl_end_reason.KL_END_LENGTH: return FinishReason.Length;
                case kl_end_reason.KL_END_STOP_TOKEN: return FinishReason.StopToken;
                case kl_end_reason.KL_END_STOP_STRING: return FinishReason.StopString;
                case kl_end_reason.KL_END_CALLBACK: return FinishReason.Callback;
                case kl_end_reason.KL_END_CANCELLED: return FinishReason.Cancelled;
                default: return FinishReason.Error;
            }
        }

        /// <summary>A snapshot of GenerateOptions: changing them while a sequence is read changes nothing.</summary>
        private sealed class GeneratorSpec
        {
            internal readonly uint MaxNewTokens;
            internal readonly SamplingParams Sampling;
            internal readonly int[] StopTokens;
            internal readonly byte[] StopStrings;
            internal readonly int TopLogprobs; // -1: no log-probabilities
            internal readonly int[] BiasTokens;
            internal readonly float[] BiasValues;
            internal readonly LogitsProcessor Processor;

            internal GeneratorSpec(GenerateOptions options)
            {
                MaxNewTokens = (uint)options.MaxNewTokens;
                Sampling = (options.Sampling ?? new SamplingParams()).Clone();
                StopTokens = options.StopTokens != null ? new List<int>(options.StopTokens).ToArray() : new int[0];
                StopStrings = Model.PackStrings(options.StopStrings ?? new string[0], "StopStrings", strict: true);
                TopLogprobs = options.TopLogprobs > 0 ? options.TopLogprobs : options.Logprobs ? 0 : -1;
                var bias = new List<KeyValuePair<int, float>>(options.LogitBias ?? new Dictionary<int, float>());
                BiasTokens = bias.ConvertAll(e => e.Key).ToArray();
                BiasValues = bias.ConvertAll(e => e.Value).ToArray();
                Processor = options.LogitsProcessor;
            }
        }

        private GeneratorHandle NewGenerator(GeneratorSpec spec)
        {
            var processor = spec.Processor != null ? new ProcessorThunk(spec.Processor) : null;
            using (kl_sampling_params p = spec.Sampling.ToNative())
                return Use(s => new GeneratorHandle(Native.Pointer(kimi_linear_native.klb_generator_create(
                               s, spec.MaxNewTokens, p, spec.StopTokens, (ulong)spec.StopTokens.Length, spec.StopStrings,
                               (ulong)spec.StopStrings.Length, spec.TopLogprobs >= 0 ? 1 : 0,
                               (uint)Math.Max(spec.TopLogprobs, 0), spec.BiasTokens, (ulong)spec.BiasTokens.Length,
                               spec.BiasValues, (ulong)spec.BiasValues.Length, processor?.Callback)))
                               { Processor = processor, TopLogprobs = spec.TopLogprobs });
        }

        /// <summary>Frees the native session (when no call on another thread still uses it). Idempotent.</summary>
        public void Dispose()
        {
            handle.Dispose();
        }

        public override string ToString()
        {
            return IsDisposed ? "Session(disposed)" : "Session(position " + Position + ")";
        }

        private static void CheckTokens(int[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException(nameof(tokens));
            if (tokens.Length == 0)
                throw new KimiLinearException.InvalidArgument("tokens is empty: nothing to append");
        }

        private T Use<T>(Func<SWIGTYPE_p_kl_session, T> body)
        {
            return handle.Use(nameof(Session), ptr => body(Native.Session(ptr)));
        }
    }
}
