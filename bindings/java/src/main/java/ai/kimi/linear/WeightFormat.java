package ai.kimi.linear;

import java.util.Locale;

/**
 * The form a model's linear weights take once loaded ({@code kl_weight_format}; the library's
 * docs/design/model.md "Quantized weights"): {@link #AUTO} as the checkpoint stores them,
 * {@link #BF16} every weight plain (a quantized checkpoint dequantized), {@link #FP8}
 * block-scaled or {@link #INT4} group-scaled weight-only (a bf16 checkpoint quantized on load).
 */
public enum WeightFormat {
    AUTO,
    BF16,
    FP8,
    INT4;

    /** {@code "auto"}, {@code "bf16"}, {@code "fp8"} or {@code "int4"} (any case). */
    public static WeightFormat parse(String name) {
        switch (name.trim().toLowerCase(Locale.ROOT)) {
            case "auto": return AUTO;
            case "bf16": return BF16;
            case "fp8": return FP8;
            case "int4": return INT4;
            default:
                throw new IllegalArgumentException("weight format \"" + name + "\": expected auto, bf16, fp8 or int4");
        }
    }
}
