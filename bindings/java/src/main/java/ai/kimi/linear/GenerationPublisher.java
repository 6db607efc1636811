package ai.kimi.linear;

import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Flow;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The pieces of one {@link Generation} as a {@link Flow.Publisher} (from
 * {@link Session#publish}): each piece is one step of the native generator, run as its own task
 * on an {@link Executor}, so no thread is held between steps and many sessions can stream on a
 * few threads. The steps run one after another, only while there is demand; signals are serial
 * (onSubscribe first, at most the demand's onNext, then onComplete or onError once).
 *
 * <p>One subscriber: a second gets onError(IllegalStateException). {@code cancel()} calls
 * {@link Session#cancel()} (the step in flight stops at once), and the generator is freed after
 * that step returns, with no cancel request left pending on the session; no signal follows. The
 * tokens generated so far stay appended. A failure (a {@link KimiLinearException}, or a
 * {@link Session#cancel()} from elsewhere: {@link KimiLinearException.Cancelled}) is onError.
 */
public final class GenerationPublisher implements Flow.Publisher<String> {
    private final Session session;
    private final Generation generation;
    private final Executor executor;
    private final AtomicBoolean subscribed = new AtomicBoolean();
    private final CompletableFuture<Void> finished = new CompletableFuture<>();

    GenerationPublisher(Session session, Generation generation, Executor executor) {
        this.session = session;
        this.generation = generation;
        this.executor = executor;
    }

    /**
     * Completes when the generation is over on the native side: no step runs, the generator is
     * freed and (after a cancel) no request is pending, so the session is free for the next
     * call. After onComplete, onError or a cancel; never without a subscriber.
     */
    public CompletableFuture<Void> finished() {
        return finished.copy();
    }

    /**
     * Why the generation ended (null while it runs): readable once {@link #finished()} completes;
     * {@link FinishReason#CANCELLED} after a cancel() that stopped it.
     */
    public FinishReason finishReason() {
        return generation.finishReason();
    }

    /** The tokens the generation appended, with their log-probabilities when asked for (see {@link Generation#tokens()}). */
    public java.util.List<Token> tokens() {
        return generation.tokens();
    }

    /** The default executor: a cached pool of daemon threads, idle ones ending after a minute. */
    static Executor defaultExecutor() {
        return DefaultPool.POOL;
    }

    private static final class DefaultPool {
        static final ExecutorService POOL = Executors.newCachedThreadPool(task -> {
            Thread t = new Thread(task, "kimi-linear-generation");
            t.setDaemon(true);
            return t;
        });
    }

    @Override
    public void subscribe(Flow.Subscriber<? super String> subscriber) {
        Objects.requireNonNull(subscriber, "subscriber");
        if (!subscribed.compareAndSet(false, true)) {
            subscriber.onSubscribe(new Flow.Subscription() {
                @Override
                public void request(long n) {}

                @Override
                public void cancel() {}
            });
            subscriber.onError(new IllegalStateException("a generation publisher takes one subscriber"));
            return;
        }
        new Steps(subscriber).start();
    }

    /**
     * The subscription: a task runs only while it owns {@code work} (taken by the signal that
     * raises it from 0), so steps and signals never overlap; each task does one step at most and
     * resubmits itself while demand remains.
     */
    private final class Steps implements Flow.Subscription, Runnable {
        private final Flow.Subscriber<? super String> subscriber;
        private final AtomicInteger work = new AtomicInteger(1); // onSubscribe owns it first
        private final AtomicLong demand = new AtomicLong();
        private final Object cancelLock = new Object();
        private volatile boolean cancelled;
        private volatile Throwable badRequest;
        private boolean done; // written under cancelLock by the owner of work

        Steps(Flow.Subscriber<? super String> subscriber) {
            this.subscriber = subscriber;
        }

        void start() {
            try {
                subscriber.onSubscribe(this);
            } catch (Throwable t) {
                cancel(); // rule 2.13: a subscriber that throws is cancelled
            }
            release(1);
        }

        @Override
        public void request(long n) {
            if (n <= 0) {
                badRequest = new IllegalArgumentException("request(" + n + "): n must be > 0 (rule 3.9)");
            } else {
                demand.getAndUpdate(d -> d + n < 0 ? Long.MAX_VALUE : d + n);
            }
            signal();
        }

        @Override
        public void cancel() {
            synchronized (cancelLock) { // the session's cancel is sent before a task can see the flag
                if (cancelled || done) return; // after the end: nothing to stop (rule 3.7)
                cancelled = true;
                session.cancel();
            }
            signal();
        }

        private void signal() {
            if (work.getAndIncrement() == 0) submit();
        }

        private void release(int seen) {
            if (work.addAndGet(-seen) != 0) submit();
        }

        private void submit() {
            try {
                executor.execute(this);
            } catch (RejectedExecutionException e) { // this thread owns work: it may end the stream
                if (done) return;
                finish();
                if (!cancelled) subscriber.onError(e);
            }
        }

        @Override
        public void run() {
            int seen = work.get();
            if (step()) {
                submit(); // more demand: the next step is a new task (keeps ownership)
            } else {
                release(seen);
            }
        }

        /** At most one native step; true if another may follow at once. */
        private boolean step() {
            if (done) return false;
            if (cancelled) {
                finish();
                return false;
            }
            Throwable bad = badRequest;
            if (bad != null) {
                finish();
                subscriber.onError(bad);
                return false;
            }
            if (demand.get() == 0) return false;
            String piece;
            try {
                piece = generation.hasNext() ? generation.next() : null;
            } catch (Throwable t) {
                if (cancelled) return true; // the next task finishes the cancel
                finish();
                subscriber.onError(t);
                return false;
            }
            if (piece == null) {
                finish();
                if (!cancelled) subscriber.onComplete();
                return false;
            }
            demand.decrementAndGet();
            try {
                if (!cancelled) subscriber.onNext(piece);
            } catch (Throwable t) {
                cancel(); // rule 2.13
            }
            return demand.get() > 0 || cancelled;
        }

        /**
         * The end, with no step running: the generator freed and, if cancel() sent a cancel, the
         * request dropped (consumed by the step it stopped, or else pending, and it would stop
         * the session's next call). A cancel() from now on sends none.
         */
        private void finish() {
            synchronized (cancelLock) {
                done = true;
                if (cancelled) session.clearCancel();
            }
            if (cancelled) generation.endCancelled();
            else generation.close();
            finished.complete(null);
        }
    }
}
