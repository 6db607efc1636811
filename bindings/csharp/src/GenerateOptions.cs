using System;
using System.Collections.Generic;

namespace KimiLinear
{
    /// <summary>What <see cref="Session.Generate"/> does (<c>kl_generate_params</c>).</summary>
    public sealed class GenerateOptions
    {
        private int maxNewTokens = 128;

        /// <summary>At most this many tokens are generated (appended). Default 128.</summary>
        public int MaxNewTokens
        {
            get { return maxNewTokens; }
            set
            {
                if (value < 0) throw new ArgumentOutOfRangeException(nameof(value), "MaxNewTokens < 0");
                maxNewTokens = value;
            }
        }

        /// <summary>How tokens are drawn (default: greedy).</summary>
        public SamplingParams Sampling { get; set; } = new SamplingParams();

        private List<int> stopTokens = new List<int>();
        private List<string> stopStrings = new List<string>();

        /// <summary>
        /// Generation ends after one of these is sampled; it is appended, not emitted. Setting it
        /// copies the values into a list of its own (an array from Tokenize stays growable).
        /// </summary>
        public IList<int> StopTokens
        {
            get => stopTokens;
            set => stopTokens = value == null ? new List<int>() : new List<int>(value);
        }

        /// <summary>
        /// Generation ends when the text contains one of these (non-empty; needs a tokenizer);
        /// the text before it is emitted, it and anything after are not. Setting it copies the
        /// values, as for <see cref="StopTokens"/>.
        /// </summary>
        public IList<string> StopStrings
        {
            get => stopStrings;
            set => stopStrings = value == null ? new List<string>() : new List<string>(value);
        }

        /// <summary>The most alternatives a step reports (KL_MAX_TOP_LOGPROBS).</summary>
        public const int MaxTopLogprobs = 20;

        private int topLogprobs;
        private Dictionary<int, float> logitBias = new Dictionary<int, float>();

        /// <summary>Each <see cref="GenerationStep"/> carries its token's natural-log probability.</summary>
        public bool Logprobs { get; set; }

        /// <summary>Each <see cref="GenerationStep"/> carries the n most likely tokens of its step, 0..20 (implies Logprobs).</summary>
        public int TopLogprobs
        {
            get { return topLogprobs; }
            set
            {
                if (value < 0 || value > MaxTopLogprobs)
                    throw new ArgumentOutOfRangeException(nameof(value), "TopLogprobs is " + value + ", must be 0.." + MaxTopLogprobs);
                topLogprobs = value;
            }
        }

        /// <summary>
        /// Added to these tokens' logits each step: finite, or float.NegativeInfinity to ban a token
        /// (ids are checked against the vocabulary when generation starts). Setting it copies the values.
        /// </summary>
        public IDictionary<int, float> LogitBias
        {
            get => logitBias;
            set => logitBias = value == null ? new Dictionary<int, float>() : new Dictionary<int, float>(value);
        }

        /// <summary>A hook over each step's logits (null: none); see <see cref="KimiLinear.LogitsProcessor"/>.</summary>
        public LogitsProcessor LogitsProcessor { get; set; }

        /// <summary>A copy whose lists are its own.</summary>
        internal GenerateOptions Clone()
        {
            return new GenerateOptions
            {
                MaxNewTokens = MaxNewTokens,
                Sampling = Sampling,
                StopTokens = StopTokens,
                StopStrings = StopStrings,
                Logprobs = Logprobs,
                TopLogprobs = TopLogprobs,
                LogitBias = LogitBias,
                LogitsProcessor = LogitsProcessor,
            };
        }
    }
}
