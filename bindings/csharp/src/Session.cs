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

        internal Session(SessionHandle handle, int vocabSize)
        {
            this.handle = handle;
            VocabSize = vocabSize;
        }

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
                                        VocabSize));
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
        public IEnumerable<string> Generate(GenerateOptions options = null)
        {
            return Pieces(GenerateTokens(options)); // GenerateTokens checks the options now
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

        private static IEnumerable<string> Pieces(GeneratedTokens tokens)
        {
            foreach (var t in tokens) yield return t.Piece;
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
            options = options ?? new GenerateOptions();
            // A snapshot of the options: changing them while the sequence is read changes nothing.
            uint maxNewTokens = (uint)options.MaxNewTokens;
            SamplingParams sampling = (options.Sampling ?? new SamplingParams()).Clone();
            int[] stopTokens = options.StopTokens != null ? new List<int>(options.StopTokens).ToArray() : new int[0];
            byte[] stopStrings = Model.PackStrings(options.StopStrings ?? new string[0], "StopStrings", strict: true);
            GeneratorHandle first = NewGenerator(maxNewTokens, sampling, stopTokens, stopStrings); // checks them
            return new GeneratedTokens(Steps(() => System.Threading.Interlocked.Exchange(ref first, null) ??
                                                   NewGenerator(maxNewTokens, sampling, stopTokens, stopStrings)));
        }

        /// <summary>
        /// One enumeration: steps a generator until the generation ends, passing on what
        /// kl_session_generate passes its callback: a token's text (even empty); on the ending
        /// step without a token, or with a stop token, only text still held back (NoToken).
        /// The generator is freed at the end, on a failure and on the enumerator's Dispose.
        /// </summary>
        private IEnumerable<(int, string)> Steps(Func<GeneratorHandle> take)
        {
            using (GeneratorHandle generator = take())
            {
                kl_end_reason end = kl_end_reason.KL_END_NONE;
                while (end == kl_end_reason.KL_END_NONE)
                {
                    // The step runs on this session: hold it too (a concurrent Dispose waits).
                    int token = Use(s => generator.Use("generation", g => kimi_linear_native.klb_generator_next(Native.Generator(g))));
                    string piece = generator.Use("generation", g =>
                    {
                        SWIGTYPE_p_klb_generator gen = Native.Generator(g);
                        end = kimi_linear_native.klb_generator_end(gen);
                        return Model.ReadText((buf, cap) => kimi_linear_native.klb_generator_piece(gen, buf, cap), 256);
                    });
                    bool tokenPiece = token != NoToken && end != kl_end_reason.KL_END_STOP_TOKEN;
                    if (tokenPiece || piece.Length > 0) yield return (tokenPiece ? token : NoToken, piece);
                }
            }
        }

        private GeneratorHandle NewGenerator(uint maxNewTokens, SamplingParams sampling, int[] stopTokens,
                                             byte[] stopStrings)
        {
            using (kl_sampling_params p = sampling.ToNative())
                return Use(s => new GeneratorHandle(Native.Pointer(kimi_linear_native.klb_generator_create(
                               s, maxNewTokens, p, stopTokens, (ulong)stopTokens.Length, stopStrings,
                               (ulong)stopStrings.Length, 0, 0, new int[0], 0, new float[0], 0, null))));
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
