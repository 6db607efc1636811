package ai.kimi.linear;

/**
 * One session's token of a {@link Batch#generate} step.
 *
 * @param index        the session's place in the batch
 * @param token        the token appended to it
 * @param piece        the text the token completes (empty while a character is unfinished,
 *                     for a stop token, whose text is not passed on, and without a tokenizer)
 * @param finishReason null while the session goes on; {@link FinishReason#STOP_TOKEN} or
 *                     {@link FinishReason#LENGTH} on its last step (it has left the batch)
 */
public record BatchStep(int index, int token, String piece, FinishReason finishReason) {}
