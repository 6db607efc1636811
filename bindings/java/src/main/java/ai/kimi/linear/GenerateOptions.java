package ai.kimi.linear;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * What {@link Session#generate} does, as {@code kl_generate_params}: at most
 * {@link #maxNewTokens()} tokens (default 128), the sampling, stop tokens (appended but not
 * emitted) and stop strings (matched on the generated text, never emitted); for chat apps, per-token
 * log-probabilities, a logit bias and a logits processor. Immutable; build with {@link #builder()}.
 */
public final class GenerateOptions {
    /** kl_generate_params_default's max_new_tokens. */
    public static final int DEFAULT_MAX_NEW_TOKENS = 128;
    /** The most alternatives a step reports ({@code KL_MAX_TOP_LOGPROBS}). */
    public static final int MAX_TOP_LOGPROBS = 20;

    private final int maxNewTokens;
    private final SamplingParams sampling;
    private final int[] stopTokens;
    private final List<String> stopStrings;
    private final boolean logprobs;
    private final int topLogprobs;
    private final Map<Integer, Float> logitBias;
    private final LogitsProcessor logitsProcessor;

    private GenerateOptions(Builder b) {
        this.maxNewTokens = b.maxNewTokens;
        this.sampling = b.sampling;
        this.stopTokens = b.stopTokens.clone();
        this.stopStrings = Collections.unmodifiableList(new ArrayList<>(b.stopStrings));
        this.logprobs = b.logprobs;
        this.topLogprobs = b.topLogprobs;
        this.logitBias = Collections.unmodifiableMap(new LinkedHashMap<>(b.logitBias));
        this.logitsProcessor = b.logitsProcessor;
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

    /** Whether each {@link Token} of {@link Generation#tokens()} carries its log-probability. */
    public boolean logprobs() {
        return logprobs || topLogprobs > 0;
    }

    /** How many alternatives each {@link Token} carries (0..{@link #MAX_TOP_LOGPROBS}). */
    public int topLogprobs() {
        return topLogprobs;
    }

    /** Added to these tokens' logits each step. */
    public Map<Integer, Float> logitBias() {
        return logitBias;
    }

    /** The hook over each step's logits, or null. */
    public LogitsProcessor logitsProcessor() {
        return logitsProcessor;
    }

    public Builder toBuilder() {
        Builder b = new Builder();
        b.maxNewTokens = maxNewTokens;
        b.sampling = sampling;
        b.stopTokens = stopTokens.clone();
        b.stopStrings = new ArrayList<>(stopStrings);
        b.logprobs = logprobs;
        b.topLogprobs = topLogprobs;
        b.logitBias = new LinkedHashMap<>(logitBias);
        b.logitsProcessor = logitsProcessor;
        return b;
    }

    public static final class Builder {
        private int maxNewTokens = DEFAULT_MAX_NEW_TOKENS;
        private SamplingParams sampling;
        private int[] stopTokens = new int[0];
        private List<String> stopStrings = new ArrayList<>();
        private boolean logprobs;
        private int topLogprobs;
        private Map<Integer, Float> logitBias = new LinkedHashMap<>();
        private LogitsProcessor logitsProcessor;

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

        /** Each generated {@link Token} carries its natural-log probability. */
        public Builder logprobs(boolean value) {
            logprobs = value;
            return this;
        }

        /** Each generated {@link Token} carries the {@code n} most likely tokens of its step (implies logprobs). */
        public Builder topLogprobs(int n) {
            if (n < 0 || n > MAX_TOP_LOGPROBS)
                throw new IllegalArgumentException("topLogprobs is " + n + ", must be 0.." + MAX_TOP_LOGPROBS);
            topLogprobs = n;
            return this;
        }

        /**
         * Adds {@code bias.get(token)} to that token's logit each step: finite, or
         * {@code Float.NEGATIVE_INFINITY} to ban it (token ids are checked against the vocabulary
         * when generation starts).
         */
        public Builder logitBias(Map<Integer, Float> bias) {
            Map<Integer, Float> copy = new LinkedHashMap<>();
            for (Map.Entry<Integer, Float> e : bias.entrySet())
                copy.put(Objects.requireNonNull(e.getKey(), "a logit bias token is null"),
                        Objects.requireNonNull(e.getValue(), "a logit bias value is null"));
            logitBias = copy;
            return this;
        }

        /** A hook over each step's logits (null: none); see {@link LogitsProcessor}. */
        public Builder logitsProcessor(LogitsProcessor processor) {
            logitsProcessor = processor;
            return this;
        }

        public GenerateOptions build() {
            return new GenerateOptions(this);
        }
    }
}
