package ai.kimi.linear;

import java.nio.FloatBuffer;

/**
 * A hook over each generation step's logits ({@code kl_logits_processor}), set with
 * {@link GenerateOptions.Builder#logitsProcessor}. It runs on the thread that steps the
 * generation, during the native step.
 */
@FunctionalInterface
public interface LogitsProcessor {
    /**
     * @param logits the step's logits (vocabSize floats, after the logit bias), a view of the
     *     library's memory: change them in place ({@code Float.NEGATIVE_INFINITY} bans a token;
     *     NaN or +infinity fail the step). Valid during this call only: do not keep it.
     * @param history the session's tokens so far (a copy)
     * @return true to end the generation here (nothing appended; {@link FinishReason#CALLBACK})
     *     An exception ends the generation too and is rethrown to the caller of the step.
     */
    boolean process(FloatBuffer logits, int[] history);
}
