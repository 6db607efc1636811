package ai.kimi.linear;

/** What {@code kl_model_info} reports about a loaded model. */
public record ModelInfo(
        int vocabSize,
        int hiddenSize,
        int nLayers,
        int nKdaLayers,
        int nMlaLayers,
        int nExperts,
        int nExpertsActive,
        /** default session capacity in tokens */
        long maxContext,
        /** the device the model runs on (never AUTO) */
        Device device,
        long weightBytes,
        /** KDA recurrent + conv state per session */
        long sessionFixedBytes,
        /** MLA latent cache bytes per token (all MLA layers) */
        long kvBytesPerToken,
        /** the tokenizer's bos token id, -1 if none */
        int bosToken,
        /** the tokenizer's eos token id, -1 if none */
        int eosToken,
        /** weights in the checkpoint (a tied lm_head once) */
        long nParams,
        /** weights one decode step reads: all but the routed experts it does not choose and the
         *  embedding table (one row; whole when it is the tied lm_head) */
        long nActiveParams,
        /** the chat format's end-of-turn token (<|im_end|>), where an assistant's reply ends; -1
         *  without a tokenizer or chat format. {@link Session#chat} and {@link Conversation} stop
         *  there */
        int eotToken,
        /** the routed experts' weights, all experts of all layers (a batch of B tokens reads about
         *  1 - (1 - nExpertsActive / nExperts)^B of them) */
        long nRoutedParams,
        /** bytes of weights one decode step reads at least (its nActiveParams), in the form the
         *  backend holds them: fp32 on the CPU (quantized weights dequantized); bf16, or FP8 / INT4
         *  codes and their fp32 scales as loaded, on CUDA */
        long decodeWeightBytes,
        /** the routed experts' bytes (nRoutedParams), held the same way */
        long routedWeightBytes,
        /** the devices the model is split over ({@link ModelOptions#devices()}), 1 for a model on one
         *  device */
        int nDevices) {
    /** The fields before the device count (one device then). */
    public ModelInfo(int vocabSize, int hiddenSize, int nLayers, int nKdaLayers, int nMlaLayers, int nExperts,
            int nExpertsActive, long maxContext, Device device, long weightBytes, long sessionFixedBytes,
            long kvBytesPerToken, int bosToken, int eosToken, long nParams, long nActiveParams, int eotToken,
            long nRoutedParams, long decodeWeightBytes, long routedWeightBytes) {
        this(vocabSize, hiddenSize, nLayers, nKdaLayers, nMlaLayers, nExperts, nExpertsActive, maxContext, device,
                weightBytes, sessionFixedBytes, kvBytesPerToken, bosToken, eosToken, nParams, nActiveParams, eotToken,
                nRoutedParams, decodeWeightBytes, routedWeightBytes, 1);
    }

    /** The fields before the routed experts' counts (which are 0 then). */
    public ModelInfo(int vocabSize, int hiddenSize, int nLayers, int nKdaLayers, int nMlaLayers, int nExperts,
            int nExpertsActive, long maxContext, Device device, long weightBytes, long sessionFixedBytes,
            long kvBytesPerToken, int bosToken, int eosToken, long nParams, long nActiveParams, int eotToken) {
        this(vocabSize, hiddenSize, nLayers, nKdaLayers, nMlaLayers, nExperts, nExpertsActive, maxContext, device,
                weightBytes, sessionFixedBytes, kvBytesPerToken, bosToken, eosToken, nParams, nActiveParams, eotToken,
                0, 0, 0);
    }

    /** The fields before the end-of-turn token (-1 then). */
    public ModelInfo(int vocabSize, int hiddenSize, int nLayers, int nKdaLayers, int nMlaLayers, int nExperts,
            int nExpertsActive, long maxContext, Device device, long weightBytes, long sessionFixedBytes,
            long kvBytesPerToken, int bosToken, int eosToken, long nParams, long nActiveParams) {
        this(vocabSize, hiddenSize, nLayers, nKdaLayers, nMlaLayers, nExperts, nExpertsActive, maxContext, device,
                weightBytes, sessionFixedBytes, kvBytesPerToken, bosToken, eosToken, nParams, nActiveParams, -1);
    }

    /** The fields before the parameter counts (which are 0 then). */
    public ModelInfo(int vocabSize, int hiddenSize, int nLayers, int nKdaLayers, int nMlaLayers, int nExperts,
            int nExpertsActive, long maxContext, Device device, long weightBytes, long sessionFixedBytes,
            long kvBytesPerToken, int bosToken, int eosToken) {
        this(vocabSize, hiddenSize, nLayers, nKdaLayers, nMlaLayers, nExperts, nExpertsActive, maxContext, device,
                weightBytes, sessionFixedBytes, kvBytesPerToken, bosToken, eosToken, 0, 0, -1);
    }
}
