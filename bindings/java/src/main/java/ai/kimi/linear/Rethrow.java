package ai.kimi.linear;

/** Rethrows what a user's callback threw, unchanged, after it came back through native code. */
final class Rethrow {
    private Rethrow() {}

    // A checked Throwable too: the callback's interface does not declare it, but Java threw it.
    @SuppressWarnings("unchecked")
    static <E extends Throwable> RuntimeException sneaky(Throwable t) throws E {
        throw (E) t;
    }
}
