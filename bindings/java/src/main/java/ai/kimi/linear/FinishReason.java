package ai.kimi.linear;

/**
 * Why a generation ended ({@code kl_end_reason}): read it from {@link Generation#finishReason()}
 * or {@link GenerationPublisher#finishReason()} once the generation is over.
 */
public enum FinishReason {
    /** {@link GenerateOptions#maxNewTokens()} tokens were generated */
    LENGTH,
    /** a stop token was sampled (it is appended, its text is not passed on) */
    STOP_TOKEN,
    /** the text completed a stop string (it and what follows are dropped) */
    STOP_STRING,
    /** the {@link LogitsProcessor} returned true */
    CALLBACK,
    /** {@link Session#cancel()} stopped it (a {@link KimiLinearException.Cancelled} was thrown) */
    CANCELLED,
    /** a step failed, or the logits processor threw (the exception was thrown) */
    ERROR
}
