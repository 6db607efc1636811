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
    }
}
