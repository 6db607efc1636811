namespace KimiLinear
{
    /// <summary>What a model is (<c>struct kl_model_info</c>), read once at load.</summary>
    public sealed class ModelInfo
    {
        internal ModelInfo(Internal.kl_model_info i)
        {
            VocabSize = checked((int)i.vocab_size);
            HiddenSize = checked((int)i.hidden_size);
            Layers = checked((int)i.n_layers);
            KdaLayers = checked((int)i.n_kda_layers);
            MlaLayers = checked((int)i.n_mla_layers);
            Experts = checked((int)i.n_experts);
            ExpertsActive = checked((int)i.n_experts_active);
            MaxContext = i.max_context;
            Device = (Device)(int)i.device;
            WeightBytes = i.weight_bytes;
            SessionFixedBytes = i.session_fixed_bytes;
            KvBytesPerToken = i.kv_bytes_per_token;
            BosToken = i.bos_token;
            EosToken = i.eos_token;
            Parameters = i.n_params;
            ActiveParameters = i.n_active_params;
            EotToken = i.eot_token;
            RoutedParameters = i.n_routed_params;
            DecodeWeightBytes = i.decode_weight_bytes;
            RoutedWeightBytes = i.routed_weight_bytes;
            Devices = checked((int)i.n_devices);
        }

        /// <summary>Vocabulary size: the length of a logits row.</summary>
        public int VocabSize { get; }
        public int HiddenSize { get; }
        public int Layers { get; }
        public int KdaLayers { get; }
        public int MlaLayers { get; }
        public int Experts { get; }
        public int ExpertsActive { get; }
        /// <summary>Default session capacity in tokens.</summary>
        public ulong MaxContext { get; }
        /// <summary>The device the model runs on (never Auto).</summary>
        public Device Device { get; }
        /// <summary>Bytes of weights held by the backend.</summary>
        public ulong WeightBytes { get; }
        /// <summary>KDA recurrent + conv state bytes per session.</summary>
        public ulong SessionFixedBytes { get; }
        /// <summary>MLA latent cache bytes per token (all MLA layers).</summary>
        public ulong KvBytesPerToken { get; }
        /// <summary>tokenizer_config.json's bos_token id, -1 if none.</summary>
        public int BosToken { get; }
        /// <summary>tokenizer_config.json's eos_token id, -1 if none.</summary>
        public int EosToken { get; }
        /// <summary>
        /// The chat format's end-of-turn token (&lt;|im_end|&gt;), where an assistant's reply ends;
        /// -1 without a tokenizer or chat format. <see cref="Session.Chat"/> and
        /// <see cref="Conversation"/> stop there.
        /// </summary>
        public int EotToken { get; }
        /// <summary>Weights in the checkpoint (a tied lm_head once).</summary>
        public ulong Parameters { get; }
        /// <summary>
        /// Weights one decode step reads: all but the routed experts it does not choose and the
        /// embedding table (one row; whole when it is the tied lm_head).
        /// </summary>
        public ulong ActiveParameters { get; }
        /// <summary>
        /// The routed experts' weights, all experts of all layers (a batch of B tokens reads about
        /// 1 - (1 - ExpertsActive / Experts)^B of them).
        /// </summary>
        public ulong RoutedParameters { get; }
        /// <summary>
        /// Bytes of weights one decode step reads at least (its <see cref="ActiveParameters"/>), in
        /// the form the backend holds them: fp32 on the CPU (quantized weights dequantized); bf16,
        /// or FP8 / INT4 codes and their fp32 scales as loaded, on CUDA.
        /// </summary>
        public ulong DecodeWeightBytes { get; }
        /// <summary>The routed experts' bytes (<see cref="RoutedParameters"/>), held the same way.</summary>
        public ulong RoutedWeightBytes { get; }
        /// <summary>The devices the model is split over (<c>Model.Load</c>'s devices), 1 for a model on one device.</summary>
        public int Devices { get; }

        public override string ToString()
        {
            return "ModelInfo(vocab " + VocabSize + ", hidden " + HiddenSize + ", layers " + Layers +
                   " (" + KdaLayers + " KDA, " + MlaLayers + " MLA), experts " + ExpertsActive + "/" +
                   Experts + ", max context " + MaxContext + ", " + Device + ")";
        }
    }
}
