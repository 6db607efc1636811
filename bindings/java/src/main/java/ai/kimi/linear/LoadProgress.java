package ai.kimi.linear;

/**
 * Load progress: called on the loading thread during {@link Model#load(java.nio.file.Path,
 * ModelOptions, LoadProgress)} with the fraction done, 0..1, rising to 1.0.
 */
@FunctionalInterface
public interface LoadProgress {
    /**
     * @return true to go on, false to abort the load (it throws {@link KimiLinearException.Cancelled}
     *     and no model is made); an exception thrown here aborts it too and is rethrown by the load
     */
    boolean report(float fraction);
}
