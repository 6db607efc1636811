package ai.kimi.linear;

import java.util.List;

/**
 * A generated token: its id and the text it completes ({@code kl_session_next}): whole characters
 * only, possibly empty (an unfinished UTF-8 character waits in the session for the next token);
 * empty for a model without a tokenizer. From a {@link Generation} ({@link Generation#tokens()})
 * asked for log-probabilities ({@link GenerateOptions.Builder#logprobs(boolean)}), also the
 * token's natural-log probability and the most likely tokens of its step
 * ({@link GenerateOptions.Builder#topLogprobs(int)}), most likely first: over the log-softmax
 * of the step's logits after the logit bias and the logits processor, before the repetition
 * penalty, temperature and top-k/top-p/min-p. Otherwise {@code logprob} is NaN and
 * {@code top} empty.
 */
public record Token(int id, String piece, float logprob, List<TokenLogprob> top) {
    public Token {
        top = List.copyOf(top);
    }

    /** A token without log-probabilities. */
    public Token(int id, String piece) {
        this(id, piece, Float.NaN, List.of());
    }
}
