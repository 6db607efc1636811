package ai.kimi.linear;

import ai.kimi.linear.internal.kimi_linear_native;
import ai.kimi.linear.internal.kl_weight_format;
import java.nio.file.Path;
import java.util.Objects;

/**
 * Checkpoint folders on disk. {@link #quantize} writes a bf16 checkpoint with its linear weights
 * quantized ({@code kl_checkpoint_quantize}; the CLI's {@code kimi quantize}), reporting progress
 * on request.
 */
public final class Checkpoint {
    private Checkpoint() {}

    /**
     * {@link #quantize(Path, Path, WeightFormat, long)} with shards of at most 4 GiB.
     */
    public static void quantize(Path in, Path out, WeightFormat format) {
        quantize(in, out, format, 0);
    }

    /**
     * Writes the bf16 checkpoint folder {@code in} to {@code out} with its linear weights in
     * {@code format}: {@link WeightFormat#FP8} (Hugging Face fine-grained FP8, 128x128 block
     * scales) or {@link WeightFormat#INT4} (compressed-tensors pack-quantized, group 128), as a
     * load with {@link ModelOptions#withWeights(WeightFormat) withWeights(format)} holds them: the
     * written folder loaded with {@link WeightFormat#AUTO} runs the logits of {@code in} loaded
     * with {@code format}. The tensors go to shards of at most {@code shardBytes} bytes (0: 4 GiB)
     * with model.safetensors.index.json; config.json gets its quantization_config, the other files
     * are copied. {@code out} is created, or must be empty. A failed call leaves nothing behind
     * (the files it wrote, and {@code out} if it made it, are removed).
     *
     * @throws KimiLinearException.InvalidArgument {@code out} is not empty or is {@code in}, or
     *     {@code format} is neither FP8 nor INT4
     * @throws KimiLinearException.Io {@code in} is not a model folder (no config.json), or
     *     {@code out} cannot be written
     * @throws KimiLinearException.Format a file of {@code in} is malformed
     * @throws IllegalArgumentException {@code shardBytes} is negative
     * @throws NullPointerException an argument is null
     */
    public static void quantize(Path in, Path out, WeightFormat format, long shardBytes) {
        quantize(in, out, format, shardBytes, null);
    }

    /**
     * {@link #quantize(Path, Path, WeightFormat, long)} reporting progress (null: none;
     * {@code kl_checkpoint_quantize_with_progress}): called on this thread with the fraction of
     * the tensors' bytes read and written, rising after each tensor, exactly 1.0 once {@code out}
     * is complete. Returning false stops the write with {@link KimiLinearException.Cancelled}; an
     * exception thrown there stops it too and is rethrown. A stopped write is a failed one:
     * nothing is left behind.
     */
    public static void quantize(Path in, Path out, WeightFormat format, long shardBytes, LoadProgress progress) {
        Objects.requireNonNull(in, "in");
        Objects.requireNonNull(out, "out");
        Objects.requireNonNull(format, "format");
        if (shardBytes < 0) throw new IllegalArgumentException("shardBytes is " + shardBytes + ", must be >= 0");
        ProgressRelay.run(progress, relay -> kimi_linear_native.klb_checkpoint_quantize(in.toString(),
                out.toString(), kl_weight_format.swigToEnum(format.ordinal()), shardBytes, relay));
    }
}
