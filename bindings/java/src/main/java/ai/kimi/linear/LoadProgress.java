package ai.kimi.linear;

/**
 * Load progress: called on the loading thread during {@link Model#load(java.nio.file.Path,
 * ModelOptions, LoadProgress)} with the fraction done, 0..1, rising to 1.0. A checkpoint write
 * reports the same way ({@link Checkpoint#quantize(java.nio.file.Path, java.nio.file.Path,
 * WeightFormat, long, LoadProgress)}).
 */
@FunctionalInterface
public interface LoadProgress {
    /**
     * @return true to go on, false to abort the load (it throws {@link KimiLinearException.Cancelled}
     *     and no model is made) or the write (nothing written is left); an exception thrown here
     *     aborts it too and is rethrown by the call
     */
    boolean report(float fraction);
}
