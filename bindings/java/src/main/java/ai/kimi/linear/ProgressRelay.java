package ai.kimi.linear;

import ai.kimi.linear.internal.kimi_linear_native;
import ai.kimi.linear.internal.kl_model_params;
import java.util.function.Supplier;

/**
 * Carries a {@link LoadProgress} through the native load: the JNI callback calls
 * {@link #report(float)} (by name), which never lets an exception into native code; the first
 * one is kept, aborts the load and is rethrown when the load returns.
 */
final class ProgressRelay {
    private final LoadProgress progress;
    private Throwable thrown;

    private ProgressRelay(LoadProgress progress) {
        this.progress = progress;
    }

    /** Called from native code (klb_model_params_set_progress's callback). */
    boolean report(float fraction) {
        if (thrown != null) return false;
        try {
            return progress.report(fraction);
        } catch (Throwable t) {
            thrown = t;
            return false;
        }
    }

    /** Runs {@code load} with {@code progress} (may be null) set on {@code params}. */
    static <T> T run(kl_model_params params, LoadProgress progress, Supplier<T> load) {
        if (progress == null) return load.get();
        ProgressRelay relay = new ProgressRelay(progress);
        kimi_linear_native.klb_model_params_set_progress(params, relay);
        try {
            return load.get();
        } catch (KimiLinearException.Cancelled e) {
            if (relay.thrown == null) throw e;
            relay.thrown.addSuppressed(e);
            throw Rethrow.sneaky(relay.thrown);
        } finally {
            kimi_linear_native.klb_model_params_free_progress(params);
        }
    }
}
