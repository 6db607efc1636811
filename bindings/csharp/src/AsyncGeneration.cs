using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace KimiLinear
{
    /// <summary>
    /// The pieces of <see cref="Session.GenerateAsync"/>, read asynchronously: each
    /// MoveNextAsync runs one step of the C library's generator (one native call; the first
    /// enumeration's generator was made by GenerateAsync, which checked the options) as a
    /// thread-pool task, so no thread is held between steps. Steps run one after another.
    /// </summary>
    /// <remarks>
    /// It is an <c>IAsyncEnumerable&lt;string&gt;</c> where the class libraries it is built
    /// against have that type (mono 6.4 and later, .NET Core 3 and later: the build defines
    /// KL_ASYNC_ENUMERABLE), so C# 8 reads it with <c>await foreach</c>; mcs, which has no
    /// <c>await foreach</c>, calls <see cref="GetAsyncEnumerator"/> and loops on
    /// <c>await e.MoveNextAsync()</c>. Built without the type, the same members return Task
    /// and Task&lt;bool&gt; instead of ValueTask and ValueTask&lt;bool&gt;.
    /// <para>Cancellation: the CancellationToken (GenerateAsync's, linked with
    /// GetAsyncEnumerator's) calls <see cref="Session.Cancel"/>, so the step in flight stops
    /// at once and its MoveNextAsync throws OperationCanceledException; DisposeAsync (which
    /// <c>await foreach</c> calls) waits for a step in flight, frees the generator and drops a
    /// cancel request that came after the last step returned, so the session is free and
    /// uncancelled for the next call. The tokens generated so far stay appended. A
    /// <see cref="Session.Cancel"/> from elsewhere throws KimiLinearException.Cancelled.</para>
    /// </remarks>
    public sealed class AsyncGeneration
#if KL_ASYNC_ENUMERABLE
        : IAsyncEnumerable<string>
#endif
    {
        private readonly Session session;
        private readonly Generation pieces;
        private readonly CancellationToken cancellationToken;

        internal AsyncGeneration(Session session, Generation pieces, CancellationToken cancellationToken)
        {
            this.session = session;
            this.pieces = pieces;
            this.cancellationToken = cancellationToken;
        }

        /// <summary>
        /// Why the latest enumeration ended (null while it runs): readable once a MoveNextAsync
        /// returned false or threw, or DisposeAsync completed (<see cref="FinishReason.Cancelled"/>
        /// after the token stopped it).
        /// </summary>
        public FinishReason? FinishReason
        {
            get { return pieces.FinishReason; }
        }

        /// <summary>The tokens the latest enumeration appended (see <see cref="Generation.Tokens"/>).</summary>
        public IReadOnlyList<GenerationStep> Tokens
        {
            get { return pieces.Tokens; }
        }

        /// <summary>
        /// One enumeration (one generation; the first uses the generator GenerateAsync made).
        /// Dispose it (DisposeAsync) when done.
        /// </summary>
        public Enumerator GetAsyncEnumerator(CancellationToken cancellationToken = default(CancellationToken))
        {
            return new Enumerator(session, pieces, this.cancellationToken, cancellationToken);
        }

#if KL_ASYNC_ENUMERABLE
        IAsyncEnumerator<string> IAsyncEnumerable<string>.GetAsyncEnumerator(CancellationToken cancellationToken)
        {
            return GetAsyncEnumerator(cancellationToken);
        }
#endif

        /// <summary>The enumerator of an <see cref="AsyncGeneration"/>.</summary>
        public sealed class Enumerator
#if KL_ASYNC_ENUMERABLE
            : IAsyncEnumerator<string>
#endif
        {
            private readonly Session session;
            private readonly GenerationRun run;
            private readonly IEnumerator<string> steps;
            private readonly CancellationTokenSource linked; // both tokens, when both can cancel
            private readonly CancellationToken token;
            private readonly CancellationTokenRegistration registration;
            private Task<bool> inFlight;
            private bool disposed;

            internal Enumerator(Session session, Generation pieces, CancellationToken first,
                                CancellationToken second)
            {
                this.session = session;
                this.run = pieces.Run;
                this.steps = pieces.GetEnumerator();
                if (first.CanBeCanceled && second.CanBeCanceled)
                {
                    linked = CancellationTokenSource.CreateLinkedTokenSource(first, second);
                    token = linked.Token;
                }
                else
                {
                    token = first.CanBeCanceled ? first : second;
                }
                if (token.CanBeCanceled) registration = token.Register(session.Cancel);
            }

            /// <summary>The piece of the last MoveNextAsync that returned true.</summary>
            public string Current { get; private set; }

            /// <summary>Runs the next step on the thread pool; false when the generation has ended.</summary>
            /// <exception cref="OperationCanceledException">the token was cancelled</exception>
            /// <exception cref="InvalidOperationException">a step is still running, or the enumerator was disposed</exception>
#if KL_ASYNC_ENUMERABLE
            public ValueTask<bool> MoveNextAsync()
            {
                return new ValueTask<bool>(Step());
            }
#else
            public Task<bool> MoveNextAsync()
            {
                return Step();
            }
#endif

            private Task<bool> Step()
            {
                if (disposed) throw new InvalidOperationException("the enumerator was disposed");
                if (inFlight != null && !inFlight.IsCompleted)
                    throw new InvalidOperationException("MoveNextAsync while the previous step runs");
                if (token.IsCancellationRequested)
                    return Task.FromCanceled<bool>(token);
                inFlight = Task.Run(() => steps.MoveNext());
                return Finish(inFlight);
            }

            private async Task<bool> Finish(Task<bool> step)
            {
                bool more;
                try
                {
                    more = await step.ConfigureAwait(false);
                }
                catch (KimiLinearException.Cancelled) when (token.IsCancellationRequested)
                {
                    throw new OperationCanceledException(token);
                }
                Current = more ? steps.Current : null;
                return more;
            }

            /// <summary>
            /// Ends the enumeration: waits for a step in flight, frees the generator and drops a
            /// cancel request the token sent after the last step returned. Idempotent.
            /// </summary>
#if KL_ASYNC_ENUMERABLE
            public ValueTask DisposeAsync()
            {
                return new ValueTask(End());
            }
#else
            public Task DisposeAsync()
            {
                return End();
            }
#endif

            private async Task End()
            {
                if (disposed) return;
                disposed = true;
                registration.Dispose(); // no Cancel from the token after this (a running one is waited for)
                Task<bool> step = inFlight;
                if (step != null)
                {
                    try
                    {
                        await step.ConfigureAwait(false);
                    }
                    catch (Exception)
                    {
                        // its MoveNextAsync reported it
                    }
                }
                steps.Dispose(); // frees the generator (no step runs now)
                if (token.IsCancellationRequested)
                {
                    session.ClearCancel();
                    if (run.FinishReason == null) run.FinishReason = KimiLinear.FinishReason.Cancelled;
                }
                if (linked != null) linked.Dispose();
            }
        }
    }
}
