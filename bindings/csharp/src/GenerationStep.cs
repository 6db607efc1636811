using System.Collections.Generic;

namespace KimiLinear
{
    /// <summary>A token and its natural-log probability: one of a <see cref="GenerationStep"/>'s alternatives.</summary>
    public struct TokenLogprob
    {
        public TokenLogprob(int token, float logprob)
        {
            Token = token;
            Logprob = logprob;
        }

        public int Token { get; }
        public float Logprob { get; }

        public override string ToString()
        {
            return Token + ": " + Logprob;
        }
    }

    /// <summary>
    /// A token a generation appended (<c>kl_generation_step</c>), with the text its step released
    /// and, when <see cref="GenerateOptions.Logprobs"/> or <see cref="GenerateOptions.TopLogprobs"/>
    /// asked for them, its natural-log probability and the most likely tokens of its step, most
    /// likely first: over the log-softmax of the step's logits after the logit bias and the logits
    /// processor, before the repetition penalty, temperature and top-k/top-p/min-p. Not asked:
    /// <see cref="Logprob"/> is NaN and <see cref="TopLogprobs"/> empty (as in the results of
    /// <see cref="Batch.Next(SamplingParams)"/>, which asks for none).
    /// </summary>
    public sealed class GenerationStep
    {
        internal GenerationStep(int token, string piece, float logprob, IReadOnlyList<TokenLogprob> top)
        {
            Token = token;
            Piece = piece;
            Logprob = logprob;
            TopLogprobs = top;
        }

        public int Token { get; }
        public string Piece { get; }
        public float Logprob { get; }
        public IReadOnlyList<TokenLogprob> TopLogprobs { get; }
    }

    /// <summary>
    /// A hook over each generation step's logits (<c>kl_logits_processor</c>): change
    /// <paramref name="logits"/> (VocabSize floats after the logit bias; a copy written back
    /// after the call) in place, <c>float.NegativeInfinity</c> bans a token (NaN or +infinity
    /// fail the step); <paramref name="history"/> holds the session's tokens so far. Return true
    /// to end the generation there (nothing appended; <see cref="FinishReason.Callback"/>). It
    /// runs on the thread that steps the generation; an exception ends the generation too and is
    /// rethrown by the step (MoveNext).
    /// </summary>
    public delegate bool LogitsProcessor(float[] logits, int[] history);
}
