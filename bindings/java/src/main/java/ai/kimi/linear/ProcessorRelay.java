package ai.kimi.linear;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Carries a {@link LogitsProcessor} through the native generator: the JNI callback calls
 * {@link #process(ByteBuffer, int[])} (by name), which never lets an exception into native code;
 * the first one ends the generation (as a true return does) and {@link Generation} rethrows it
 * after the step returns.
 */
final class ProcessorRelay {
    private final LogitsProcessor processor;
    private volatile Throwable thrown;

    ProcessorRelay(LogitsProcessor processor) {
        this.processor = processor;
    }

    /** Called from native code (klb_generator_create's processor). */
    boolean process(ByteBuffer logits, int[] history) {
        if (thrown != null) return true;
        try {
            return processor.process(logits.order(ByteOrder.nativeOrder()).asFloatBuffer(), history);
        } catch (Throwable t) {
            thrown = t;
            return true;
        }
    }

    /** The exception the processor threw, once (null if none). */
    Throwable takeThrown() {
        Throwable t = thrown;
        thrown = null;
        return t;
    }
}
