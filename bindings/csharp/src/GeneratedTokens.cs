using System;
using System.Collections;
using System.Collections.Generic;

namespace KimiLinear
{
    /// <summary>
    /// The lazy sequence <see cref="Session.GenerateTokens"/> returns: an
    /// <c>IEnumerable&lt;(int Token, string Piece)&gt;</c> whose foreach enumerator yields
    /// <c>(int Token, string Piece)</c> with its element names. Each enumeration is one
    /// generation by the C library's generator (see <see cref="Session.GenerateTokens"/>); the
    /// enumerator's Dispose (foreach does it) ends it and frees the generator.
    /// </summary>
    /// <remarks>
    /// Why a class rather than a plain <c>IEnumerable&lt;(int Token, string Piece)&gt;</c>
    /// return type: mcs (Mono's C# compiler, the one these bindings are built with) encodes
    /// the names of a tuple nested in a generic type wrongly (TupleElementNames
    /// [null, "Token", "Piece"] instead of ["Token", "Piece"]), so callers compiled with mcs
    /// would see the names shifted (".Token" typed string). A tuple that is the whole type of
    /// a member (Current here, Session.Next's result) is encoded correctly, so a foreach
    /// compiled by Roslyn sees .Token and .Piece. (mcs's foreach ignores the names of Current:
    /// code built with mcs reads Item1/Item2 or deconstructs.) Through the interface (LINQ,
    /// <c>new List&lt;(int Token, string Piece)&gt;(sequence)</c>) the elements are the same
    /// (int, string) values.
    /// </remarks>
    public sealed class GeneratedTokens : IEnumerable<ValueTuple<int, string>>
    {
        private readonly IEnumerable<(int, string)> source;

        internal GeneratedTokens(IEnumerable<(int, string)> source, GenerationRun run)
        {
            this.source = source;
            Run = run;
        }

        internal GenerationRun Run { get; }

        /// <summary>Why the latest enumeration ended; null while it runs, or when it was disposed before its end.</summary>
        public FinishReason? FinishReason
        {
            get { return Run.FinishReason; }
        }

        /// <summary>The tokens the latest enumeration appended, with their log-probabilities when asked for (a copy).</summary>
        public IReadOnlyList<GenerationStep> Tokens
        {
            get { return Run.Steps.ToArray(); }
        }

        /// <summary>The foreach enumerator: each step may run one decode step.</summary>
        public Enumerator GetEnumerator()
        {
            return new Enumerator(source.GetEnumerator());
        }

        // (ValueTuple spelled out: mcs parses no tuple syntax in an explicit implementation, and
        // names in a base list would hit the same encoding bug.)
        IEnumerator<ValueTuple<int, string>> IEnumerable<ValueTuple<int, string>>.GetEnumerator()
        {
            return source.GetEnumerator();
        }

        IEnumerator IEnumerable.GetEnumerator()
        {
            return source.GetEnumerator();
        }

        public sealed class Enumerator : IDisposable
        {
            private readonly IEnumerator<(int, string)> inner;

            internal Enumerator(IEnumerator<(int, string)> inner)
            {
                this.inner = inner;
            }

            public (int Token, string Piece) Current
            {
                get { return inner.Current; }
            }

            public bool MoveNext()
            {
                return inner.MoveNext();
            }

            public void Dispose()
            {
                inner.Dispose();
            }
        }
    }
}
