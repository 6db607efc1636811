package ai.kimi.linear;

import java.nio.charset.StandardCharsets;

/**
 * A failure reported by the Kimi Linear library: its {@link Status} and the library's message
 * ({@code kl_last_error()}).
 *
 * <p>Unchecked, deliberately. Most failures are programming errors (an out-of-range token id, a
 * closed handle, a too-long prompt for the session's context), and the rest (a bad model folder,
 * out of memory, a device error) cannot be repaired by the code that made the call; checked
 * exceptions would also not pass through {@link java.util.Iterator} and
 * {@link java.util.stream.Stream}, which {@link Session#generate} and {@link Session#stream} return.
 * The one status a caller routinely expects, {@link Status#CANCELLED} after {@link Session#cancel},
 * has its own subclass to catch. This follows {@link java.io.UncheckedIOException} and the JDK's
 * own runtime exceptions.
 *
 * <p>Every status has a subclass, so callers can catch exactly what they handle, e.g.
 * {@code catch (KimiLinearException.ContextFull e)}. A failed call changes nothing: the session's
 * position, state and last logits are as before (the C API's contract).
 */
public class KimiLinearException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final Status status;

    public KimiLinearException(Status status, String message) {
        super(message);
        this.status = status;
    }

    /** The status the library returned. */
    public Status status() {
        return status;
    }

    /** The exception class for a status. */
    public static KimiLinearException of(Status status, String message) {
        switch (status) {
            case INVALID_ARGUMENT: return new InvalidArgument(message);
            case IO: return new Io(message);
            case FORMAT: return new Format(message);
            case UNSUPPORTED: return new Unsupported(message);
            case OUT_OF_MEMORY: return new OutOfMemory(message);
            case CONTEXT_FULL: return new ContextFull(message);
            case CANCELLED: return new Cancelled(message);
            case DEVICE: return new Device(message);
            case BUSY: return new Busy(message);
            default: return new Internal(message);
        }
    }

    /** Called by the JNI glue (bindings/swig/kimi_linear.i): the status and the UTF-8 message. */
    static KimiLinearException fromNative(int status, byte[] message) {
        String text = message == null ? "" : new String(message, StandardCharsets.UTF_8);
        return of(Status.of(status), text);
    }

    /** {@code KL_ERR_INVALID_ARGUMENT}: an argument the library rejects (e.g. a token id past the vocabulary). */
    public static final class InvalidArgument extends KimiLinearException {
        private static final long serialVersionUID = 1L;
        public InvalidArgument(String message) { super(Status.INVALID_ARGUMENT, message); }
    }

    /** {@code KL_ERR_IO}: a file could not be read. */
    public static final class Io extends KimiLinearException {
        private static final long serialVersionUID = 1L;
        public Io(String message) { super(Status.IO, message); }
    }

    /** {@code KL_ERR_FORMAT}: a file or snapshot is malformed or belongs to another model. */
    public static final class Format extends KimiLinearException {
        private static final long serialVersionUID = 1L;
        public Format(String message) { super(Status.FORMAT, message); }
    }

    /** {@code KL_ERR_UNSUPPORTED}: e.g. text functions on a model folder without a tokenizer. */
    public static final class Unsupported extends KimiLinearException {
        private static final long serialVersionUID = 1L;
        public Unsupported(String message) { super(Status.UNSUPPORTED, message); }
    }

    /** {@code KL_ERR_OUT_OF_MEMORY}: host or device memory ran out. */
    public static final class OutOfMemory extends KimiLinearException {
        private static final long serialVersionUID = 1L;
        public OutOfMemory(String message) { super(Status.OUT_OF_MEMORY, message); }
    }

    /** {@code KL_ERR_CONTEXT_FULL}: the session's MLA cache cannot hold the tokens. */
    public static final class ContextFull extends KimiLinearException {
        private static final long serialVersionUID = 1L;
        public ContextFull(String message) { super(Status.CONTEXT_FULL, message); }
    }

    /** {@code KL_ERR_CANCELLED}: {@link Session#cancel} stopped the call. */
    public static final class Cancelled extends KimiLinearException {
        private static final long serialVersionUID = 1L;
        public Cancelled(String message) { super(Status.CANCELLED, message); }
    }

    /** {@code KL_ERR_DEVICE}: the GPU reported an error. */
    public static final class Device extends KimiLinearException {
        private static final long serialVersionUID = 1L;
        public Device(String message) { super(Status.DEVICE, message); }
    }

    /** {@code KL_ERR_INTERNAL}: a bug in the library. */
    public static final class Internal extends KimiLinearException {
        private static final long serialVersionUID = 1L;
        public Internal(String message) { super(Status.INTERNAL, message); }
    }

    /**
     * {@code KL_ERR_BUSY}: the session is in use by another call (a session is used by one
     * thread at a time; only {@link Session#cancel()} and {@link Session#clearCancel()} may be
     * called meanwhile). Nothing was done: retry when that call has returned.
     */
    public static final class Busy extends KimiLinearException {
        private static final long serialVersionUID = 1L;
        public Busy(String message) { super(Status.BUSY, message); }
    }
}
