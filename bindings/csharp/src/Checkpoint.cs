using System;
using KimiLinear.Internal;

namespace KimiLinear
{
    /// <summary>
    /// Checkpoint folders on disk. <see cref="Quantize"/> writes a bf16 checkpoint with its linear
    /// weights quantized (<c>kl_checkpoint_quantize</c>; the CLI's <c>kimi quantize</c>), reporting
    /// progress on request.
    /// </summary>
    public static class Checkpoint
    {
        /// <summary>
        /// Writes the bf16 checkpoint folder <paramref name="inDir"/> to <paramref name="outDir"/>
        /// with its linear weights in <paramref name="format"/>: <see cref="WeightFormat.Fp8"/>
        /// (Hugging Face fine-grained FP8, 128x128 block scales) or <see cref="WeightFormat.Int4"/>
        /// (compressed-tensors pack-quantized, group 128), as <c>Model.Load(inDir, weights: format)</c>
        /// holds them: <c>Model.Load(outDir)</c> (weights Auto) runs the same logits. The tensors go
        /// to shards of at most <paramref name="shardBytes"/> bytes (0: 4 GiB) with
        /// model.safetensors.index.json; config.json gets its quantization_config, the other files
        /// are copied. <paramref name="outDir"/> is created, or must be empty. A failed call leaves
        /// nothing behind (the files it wrote, and outDir if it made it, are removed).
        /// <paramref name="progress"/> (null: none; <c>kl_checkpoint_quantize_with_progress</c>) is
        /// called on this thread with the fraction of the tensors' bytes read and written, rising
        /// after each tensor, exactly 1 once outDir is complete; returning false stops the write
        /// (KimiLinearException.Cancelled, a failed call); an exception it throws stops it too and
        /// is rethrown.
        /// </summary>
        /// <exception cref="KimiLinearException.InvalidArgument">outDir is not empty or is inDir, or
        /// format is neither Fp8 nor Int4</exception>
        /// <exception cref="KimiLinearException.Io">inDir is not a model folder (no config.json), or
        /// outDir cannot be written</exception>
        /// <exception cref="KimiLinearException.Format">a file of inDir is malformed</exception>
        /// <exception cref="KimiLinearException.Cancelled">progress returned false</exception>
        /// <exception cref="ArgumentNullException">inDir or outDir is null</exception>
        public static void Quantize(string inDir, string outDir, WeightFormat format, ulong shardBytes = 0,
                                    Func<float, bool> progress = null)
        {
            if (inDir == null) throw new ArgumentNullException(nameof(inDir));
            if (outDir == null) throw new ArgumentNullException(nameof(outDir));
            NativeLibraryLoader.EnsureLoaded();
            LoadProgress.Run(progress, callback => Native.Call(() => kimi_linear_native.klb_checkpoint_quantize(
                inDir, outDir, (kl_weight_format)(int)format, shardBytes, callback))); // out of range: the library's error
        }
    }
}
