package ai.kimi.linear;

import ai.kimi.linear.internal.kimi_linear_native;
import ai.kimi.linear.internal.kl_model_params;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * Carries a {@link LoadProgress} through a native load or checkpoint write: the JNI callback
 * calls {@link #report(float)} (by name), which never lets an exception into native code; the
 * first one is kept, aborts the call and is rethrown when the call returns.
 */
final class ProgressRelay {
    private final LoadProgress progress;
    private Throwable thrown;

    private ProgressRelay(LoadProgress progress) {
        this.progress = progress;
    }

    /** Called from native code (the callback of klb_model_params_set_progress, klb_checkpoint_quantize). */
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
            return relay.rethrowing(load);
        } finally {
            kimi_linear_native.klb_model_params_free_progress(params);
        }
    }

    /** Runs {@code call} with the relay of {@code progress}, or with null when that is null. */
    static void run(LoadProgress progress, Consumer<ProgressRelay> call) {
        if (progress == null) {
            call.accept(null);
            return;
        }
        ProgressRelay relay = new ProgressRelay(progress);
        relay.rethrowing(() -> {
            call.accept(relay);
            return null;
        });
    }

    /** Runs {@code call}; the Cancelled that an exception of the callback caused becomes that exception. */
    private <T> T rethrowing(Supplier<T> call) {
        try {
            return call.get();
        } catch (KimiLinearException.Cancelled e) {
            if (thrown == null) throw e;
            thrown.addSuppressed(e);
            throw Rethrow.sneaky(thrown);
        }
    }
}
