package ai.kimi.linear;

/** A token and its natural-log probability: one of a {@link Token}'s alternatives. */
public record TokenLogprob(int token, float logprob) {}
