package ai.kimi.linear;

import java.lang.ref.Cleaner;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The lifetime of one native handle: explicit {@link #close()}, a {@link Cleaner} as the safety
 * net for objects never closed, and a use count so that a close racing with a call on another
 * thread frees the handle only when that call is done (never while the library uses it).
 * Use after close throws {@link IllegalStateException}.
 */
abstract class NativeResource implements AutoCloseable {
    static final Cleaner CLEANER = Cleaner.create();

    private final String what;
    private final AtomicBoolean closed = new AtomicBoolean();
    private final AtomicInteger uses = new AtomicInteger(1); // 1 = held by "open"
    private final Cleaner.Cleanable cleanable;

    /** free must not refer to this object (else it is never unreachable). */
    NativeResource(String what, Runnable free) {
        this.what = what;
        this.cleanable = CLEANER.register(this, free);
    }

    /** Marks the start of a native call; pair with {@link #release()} in a finally block. */
    final void acquire() {
        if (closed.get()) throw new IllegalStateException(what + " is closed");
        for (;;) {
            int n = uses.get();
            if (n == 0) throw new IllegalStateException(what + " is closed");
            if (uses.compareAndSet(n, n + 1)) return;
        }
    }

    /** Like {@link #acquire()}, but false instead of an exception when closed. */
    final boolean tryAcquire() {
        for (;;) {
            if (closed.get()) return false;
            int n = uses.get();
            if (n == 0) return false;
            if (uses.compareAndSet(n, n + 1)) return true;
        }
    }

    final void release() {
        if (uses.decrementAndGet() == 0) cleanable.clean();
    }

    /** True once {@link #close()} was called. */
    public final boolean isClosed() {
        return closed.get();
    }

    /** Frees the native handle (when no call on another thread still uses it). Idempotent. */
    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) release();
    }
}
