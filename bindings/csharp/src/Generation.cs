using System;
using System.Collections;
using System.Collections.Generic;
using System.Text;

namespace KimiLinear
{
    /// <summary>
    /// What the latest enumeration of a generation reports besides its pieces: why it ended, the
    /// tokens it appended (with their log-probabilities when asked for) and its text. Shared by
    /// <see cref="Generation"/>, <see cref="GeneratedTokens"/> and <see cref="AsyncGeneration"/>.
    /// </summary>
    internal sealed class GenerationRun
    {
        internal FinishReason? FinishReason;
        internal readonly List<GenerationStep> Steps = new List<GenerationStep>();
        internal readonly StringBuilder Text = new StringBuilder();
        internal GeneratorHandle Active; // the generator the enumeration running steps
        internal Action OnEnd;           // run once, when the first enumeration ends (Conversation)

        internal void Start(GeneratorHandle generator)
        {
            FinishReason = null;
            Steps.Clear();
            Text.Clear();
            Active = generator;
        }

        internal void End()
        {
            Active = null;
            Action hook = OnEnd;
            OnEnd = null;
            if (hook != null) hook();
        }
    }

    /// <summary>
    /// The lazy sequence of pieces <see cref="Session.Generate"/> returns (an
    /// <c>IEnumerable&lt;string&gt;</c>: each enumeration is one generation by the C library's
    /// generator), and what its latest enumeration reports: <see cref="FinishReason"/>,
    /// <see cref="Tokens"/> and <see cref="Text"/>.
    /// </summary>
    public sealed class Generation : IEnumerable<string>
    {
        private readonly GeneratedTokens tokens;

        internal Generation(GeneratedTokens tokens)
        {
            this.tokens = tokens;
        }

        internal GenerationRun Run
        {
            get { return tokens.Run; }
        }

        /// <summary>Why the latest enumeration ended; null while it runs, or when it was disposed before its end.</summary>
        public FinishReason? FinishReason
        {
            get { return Run.FinishReason; }
        }

        /// <summary>
        /// The tokens the latest enumeration appended so far, one per step that appended one (a
        /// stop token included), with the text each step released and, when asked for, its
        /// log-probabilities (a copy).
        /// </summary>
        public IReadOnlyList<GenerationStep> Tokens
        {
            get { return Run.Steps.ToArray(); }
        }

        /// <summary>The text the latest enumeration passed on so far: its pieces joined.</summary>
        public string Text
        {
            get { return Run.Text.ToString(); }
        }

        public IEnumerator<string> GetEnumerator()
        {
            foreach (var t in tokens) yield return t.Piece;
        }

        IEnumerator IEnumerable.GetEnumerator()
        {
            return GetEnumerator();
        }
    }
}
