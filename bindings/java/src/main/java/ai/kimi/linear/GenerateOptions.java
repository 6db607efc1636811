package ai.kimi.linear;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * What {@link Session#generate} does, as {@code kl_generate_params}: at most
 * {@link #maxNewTokens()} tokens (default 128), the sampling, stop tokens (appended but not
 * emitted) and stop strings (matched on the generated text, never emitted). Immutable; build with
 * {@link #builder()}.
 */
public final class GenerateOptions {
    /** kl_generate_params_default's max_new_tokens. */
    public static final int DEFAULT_MAX_NEW_TOKENS = 128;

    private final int maxNewTokens;
    private final SamplingParams sampling;
    private final int[] stopTokens;
    private final List<String> stopStrings;

    private GenerateOptions(Builder b) {
        this.maxNewTokens = b.maxNewTokens;
        this.sampling = b.sampling;
        this.stopTokens = b.stopTokens.clone();
        this.stopStrings = Collections.unmodifiableList(new ArrayList<>(b.stopStrings));
    }

    public static GenerateOptions defaults() {
        return builder().build();
    }

    public static Builder builder() {
        return new Builder();
    }

    public int maxNewTokens() {
        return maxNewTokens;
    }

    /** The sampling; null means {@link SamplingParams#defaults()}. */
    public SamplingParams sampling() {
        return sampling != null ? sampling : SamplingParams.defaults();
    }

    public int[] stopTokens() {
        return stopTokens.clone();
    }

    public List<String> stopStrings() {
        return stopStrings;
    }

    public Builder toBuilder() {
        Builder b = new Builder();
        b.maxNewTokens = maxNewTokens;
        b.sampling = sampling;
        b.stopTokens = stopTokens.clone();
        b.stopStrings = new ArrayList<>(stopStrings);
        return b;
    }

    public static final class Builder {
        private int maxNewTokens = DEFAULT_MAX_NEW_TOKENS;
        private SamplingParams sampling;
        private int[] stopTokens = new int[0];
        private List<String> stopStrings = new ArrayList<>();

        private Builder() {}

        public Builder maxNewTokens(int value) {
            if (value < 0) throw new IllegalArgumentException("maxNewTokens < 0");
            maxNewTokens = value;
            return this;
        }

        public Builder sampling(SamplingParams value) {
            sampling = Objects.requireNonNull(value, "sampling");
            return this;
        }

        public Builder stopTokens(int... tokens) {
            stopTokens = tokens.clone();
            return this;
        }

        /** UTF-8 text, non-empty; needs a model with a tokenizer. */
        public Builder stopStrings(String... strings) {
            return stopStrings(Arrays.asList(strings));
        }

        public Builder stopStrings(List<String> strings) {
            List<String> copy = new ArrayList<>(strings.size());
            for (String s : strings) copy.add(Objects.requireNonNull(s, "a stop string is null"));
            stopStrings = copy;
            return this;
        }

        public GenerateOptions build() {
            return new GenerateOptions(this);
        }
    }
}
