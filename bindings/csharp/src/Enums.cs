namespace KimiLinear
{
    /// <summary>The outcome of a library call (<c>kl_status</c>, value for value).</summary>
    public enum Status
    {
        Ok = 0,
        InvalidArgument,
        Io,
        Format,
        Unsupported,
        OutOfMemory,
        ContextFull,
        Cancelled,
        Device,
        Internal,
        /// <summary>The session is in use by another call (one thread at a time); nothing was done.</summary>
        Busy,
    }

    /// <summary>Where a model runs (<c>kl_device</c>, value for value).</summary>
    public enum Device
    {
        /// <summary>CUDA when the library was built with it and a GPU is present, else the CPU.</summary>
        Auto = 0,
        Cpu,
        Cuda,
    }

    /// <summary>
    /// The form a model's linear weights take once loaded (<c>kl_weight_format</c>, value for
    /// value; the library's docs/design/model.md "Quantized weights").
    /// </summary>
    public enum WeightFormat
    {
        /// <summary>As the checkpoint stores them (bf16, or the FP8 / INT4 of its quantization_config).</summary>
        Auto = 0,
        /// <summary>Every weight plain (a quantized checkpoint dequantized).</summary>
        Bf16,
        /// <summary>FP8 block-scaled (128x128): a bf16 checkpoint quantized on load.</summary>
        Fp8,
        /// <summary>INT4 group-scaled (128) weight-only: a bf16 checkpoint quantized on load.</summary>
        Int4,
    }

    /// <summary>
    /// Why a generation ended (<c>kl_end_reason</c>): <see cref="Generation.FinishReason"/>,
    /// <see cref="GeneratedTokens.FinishReason"/>, <see cref="AsyncGeneration.FinishReason"/>.
    /// </summary>
    public enum FinishReason
    {
        /// <summary>MaxNewTokens tokens were generated.</summary>
        Length,
        /// <summary>A stop token was sampled (it is appended, its text is not passed on).</summary>
        StopToken,
        /// <summary>The text completed a stop string (it and what follows are dropped).</summary>
        StopString,
        /// <summary>The <see cref="GenerateOptions.LogitsProcessor"/> returned true.</summary>
        Callback,
        /// <summary><see cref="Session.Cancel"/> stopped it (the step threw KimiLinearException.Cancelled, or GenerateAsync's token was cancelled).</summary>
        Cancelled,
        /// <summary>A step failed, or the logits processor threw (the exception was thrown).</summary>
        Error,
    }
}
