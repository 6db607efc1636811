namespace KimiLinear
{
    /// <summary>One session's token of a <see cref="Batch.Generate(int, int[], SamplingParams)"/> step.</summary>
    public sealed class BatchStep
    {
        internal BatchStep(int index, int token, string piece, FinishReason? finishReason)
        {
            Index = index;
            Token = token;
            Piece = piece;
            FinishReason = finishReason;
        }

        /// <summary>The session's place in the batch.</summary>
        public int Index { get; }

        /// <summary>The token appended to it.</summary>
        public int Token { get; }

        /// <summary>
        /// The text the token completes: empty while a character is unfinished, for a stop token
        /// (its text is not passed on) and without a tokenizer.
        /// </summary>
        public string Piece { get; }

        /// <summary>null while the session goes on; StopToken or Length on its last step (it has left the batch).</summary>
        public FinishReason? FinishReason { get; }

        public override string ToString()
        {
            return "BatchStep(" + Index + ", " + Token + ", \"" + Piece + "\"" +
                   (FinishReason.HasValue ? ", " + FinishReason.Value : "") + ")";
        }
    }
}
