package ai.kimi.linear;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.stream.Collectors;
import org.junit.AfterClass;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Session.publish (Flow.Publisher of pieces) and load progress. Environment as KimiLinearTest's
 * (KL_TOKENIZER_MODEL).
 */
public class AsyncAndProgressTest {
    private static final String PROMPT = "Once upon a time";
    private static final long WAIT_S = 30;

    private static Model model;

    private static Path modelDir() {
        String value = System.getenv("KL_TOKENIZER_MODEL");
        if (value == null || value.isEmpty()) fail("environment variable KL_TOKENIZER_MODEL is not set");
        return Paths.get(value);
    }

    @BeforeClass
    public static void loadModel() {
        model = Model.load(modelDir(), ModelOptions.defaults().withDevice("cpu").withThreads(2));
    }

    @AfterClass
    public static void closeModel() {
        if (model != null) model.close();
    }

    private static GenerateOptions options(int maxNewTokens) {
        return GenerateOptions.builder().maxNewTokens(maxNewTokens).build();
    }

    private static List<String> syncPieces(String prompt, GenerateOptions options) {
        try (Session s = model.newSession()) {
            s.append(model.tokenize(prompt, true));
            return s.stream(options).collect(Collectors.toList());
        }
    }

    /**
     * Records every signal, checks the rules a subscriber can see (onSubscribe first, no onNext
     * beyond demand, nothing after a terminal signal, no overlapping signals) and requests
     * {@code batch} at a time (0: only what the test requests).
     */
    static final class Recorder implements Flow.Subscriber<String> {
        final List<String> pieces = Collections.synchronizedList(new ArrayList<>());
        final List<String> violations = Collections.synchronizedList(new ArrayList<>());
        final CountDownLatch terminated = new CountDownLatch(1);
        final AtomicInteger inSignal = new AtomicInteger();
        volatile Flow.Subscription subscription;
        volatile Throwable error;
        volatile boolean completed;
        volatile Consumer<Recorder> onEachPiece = r -> {};
        private long requested;
        private final long batch;

        Recorder(long batch) {
            this.batch = batch;
        }

        private void enter(String what) {
            if (inSignal.getAndIncrement() != 0) violations.add(what + " overlaps another signal");
            if (terminated.getCount() == 0) violations.add(what + " after the terminal signal");
        }

        private void leave() {
            inSignal.decrementAndGet();
        }

        synchronized void request(long n) {
            requested += n;
            subscription.request(n);
        }

        @Override
        public void onSubscribe(Flow.Subscription s) {
            enter("onSubscribe");
            if (subscription != null) violations.add("onSubscribe twice");
            subscription = s;
            leave();
            if (batch > 0) request(batch);
        }

        @Override
        public void onNext(String piece) {
            enter("onNext");
            if (subscription == null) violations.add("onNext before onSubscribe");
            pieces.add(piece);
            synchronized (this) {
                if (pieces.size() > requested) violations.add("onNext beyond demand");
            }
            leave();
            onEachPiece.accept(this);
            if (batch > 0 && pieces.size() % batch == 0) request(batch);
        }

        @Override
        public void onError(Throwable t) {
            enter("onError");
            error = t;
            leave();
            terminated.countDown();
        }

        @Override
        public void onComplete() {
            enter("onComplete");
            completed = true;
            leave();
            terminated.countDown();
        }

        void awaitTermination() throws InterruptedException {
            assertTrue("the publisher ended", terminated.await(WAIT_S, TimeUnit.SECONDS));
        }
    }

    @Test
    public void piecesEqualTheSyncStreamOneRequestAtATime() throws Exception {
        GenerateOptions options = GenerateOptions.builder().maxNewTokens(24)
                .sampling(SamplingParams.defaults().withTemperature(0.9f).withTopK(40)).build();
        List<String> want = syncPieces(PROMPT, options);
        try (Session s = model.newSession()) {
            s.append(model.tokenize(PROMPT, true));
            Recorder r = new Recorder(1);
            GenerationPublisher publisher = s.publish(options);
            publisher.subscribe(r);
            r.awaitTermination();
            publisher.finished().get(WAIT_S, TimeUnit.SECONDS);
            assertEquals(Collections.emptyList(), r.violations);
            assertNull(r.error);
            assertTrue(r.completed);
            assertEquals(want, r.pieces);
        }
    }

    @Test
    public void noPieceBeyondDemand() throws Exception {
        try (Session s = model.newSession()) {
            s.append(model.tokenize(PROMPT, true));
            Recorder r = new Recorder(0);
            GenerationPublisher publisher = s.publish(options(20));
            publisher.subscribe(r);
            r.request(3);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
            while (r.pieces.size() < 3 && System.nanoTime() < deadline) Thread.sleep(5);
            Thread.sleep(200); // time for any step run without demand
            assertEquals(3, r.pieces.size());
            assertFalse(r.completed);
            r.request(Long.MAX_VALUE - 3); // unbounded; the sum must not overflow
            r.awaitTermination();
            assertEquals(Collections.emptyList(), r.violations);
            assertTrue(r.completed);
            assertEquals(syncPieces(PROMPT, options(20)), r.pieces);
        }
    }

    @Test
    public void cancelStopsPromptlyAndFreesTheSession() throws Exception {
        try (Session s = model.newSession()) {
            s.append(model.tokenize(PROMPT, true));
            Recorder r = new Recorder(Long.MAX_VALUE);
            r.onEachPiece = rec -> {
                if (rec.pieces.size() == 3) rec.subscription.cancel();
            };
            GenerationPublisher publisher = s.publish(options(100000));
            long start = System.nanoTime();
            publisher.subscribe(r);
            publisher.finished().get(WAIT_S, TimeUnit.SECONDS);
            assertTrue("cancelled within 5 s", System.nanoTime() - start < 5_000_000_000L);
            assertEquals(Collections.emptyList(), r.violations);
            assertEquals(3, r.pieces.size()); // nothing after cancel
            assertFalse(r.completed);
            assertNull(r.error);
            long position = s.position();
            assertTrue(position < 1000);
            s.append(5); // no cancel left pending, not busy
            assertEquals(position + 1, s.position());
        }
    }

    @Test
    public void cancelAfterTheNativeCallReturnedLeavesNoRequestPending() throws Exception {
        // The cancel comes while a step's native call has returned but its task has not ended:
        // the session's cancel then finds no call to stop and must not stop the next one.
        CountDownLatch stepReturned = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        ExecutorService pool = Executors.newSingleThreadExecutor();
        try (Session s = model.newSession()) {
            s.append(model.tokenize(PROMPT, true));
            Recorder r = new Recorder(1);
            r.onEachPiece = rec -> {
                stepReturned.countDown();
                try {
                    release.await(WAIT_S, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            };
            GenerationPublisher publisher = s.publish(options(50), pool);
            publisher.subscribe(r);
            assertTrue(stepReturned.await(WAIT_S, TimeUnit.SECONDS));
            r.subscription.cancel(); // from this thread, while the step's task is held
            release.countDown();
            publisher.finished().get(WAIT_S, TimeUnit.SECONDS);
            assertEquals(1, r.pieces.size());
            long position = s.position();
            s.append(5); // would throw Cancelled if the request were left pending
            assertEquals(position + 1, s.position());
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    public void cancelAfterTheEndDoesNothing() throws Exception {
        try (Session s = model.newSession()) {
            s.append(model.tokenize(PROMPT, true));
            Recorder r = new Recorder(Long.MAX_VALUE);
            GenerationPublisher publisher = s.publish(options(4));
            publisher.subscribe(r);
            r.awaitTermination();
            publisher.finished().get(WAIT_S, TimeUnit.SECONDS);
            assertTrue(r.completed);
            r.subscription.cancel(); // rule 3.7: a no-op, so no cancel request for the next call
            long position = s.position();
            s.append(5);
            assertEquals(position + 1, s.position());
        }
    }

    @Test
    public void twoSessionsStreamOnOneThread() throws Exception {
        // One pool thread for both: they can only both progress if each step returns it.
        String other = "The sky is";
        List<String> wantA = syncPieces(PROMPT, options(20));
        List<String> wantB = syncPieces(other, options(20));
        ExecutorService pool = Executors.newSingleThreadExecutor();
        List<String> order = Collections.synchronizedList(new ArrayList<>());
        try (Session a = model.newSession(); Session b = model.newSession()) {
            a.append(model.tokenize(PROMPT, true));
            b.append(model.tokenize(other, true));
            Recorder ra = new Recorder(1);
            Recorder rb = new Recorder(1);
            ra.onEachPiece = r -> order.add("a");
            rb.onEachPiece = r -> order.add("b");
            a.publish(options(20), pool).subscribe(ra);
            b.publish(options(20), pool).subscribe(rb);
            ra.awaitTermination();
            rb.awaitTermination();
            assertEquals(wantA, ra.pieces);
            assertEquals(wantB, rb.pieces);
            assertTrue("the streams interleave", order.indexOf("b") < order.lastIndexOf("a"));
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    public void oneSubscriberAndPositiveRequests() throws Exception {
        try (Session s = model.newSession()) {
            s.append(model.tokenize(PROMPT, true));
            GenerationPublisher publisher = s.publish(options(5));
            Recorder first = new Recorder(0);
            publisher.subscribe(first);
            Recorder second = new Recorder(0);
            publisher.subscribe(second);
            second.awaitTermination();
            assertTrue(second.error instanceof IllegalStateException);
            first.request(0); // rule 3.9
            first.awaitTermination();
            assertTrue(first.error instanceof IllegalArgumentException);
            publisher.finished().get(WAIT_S, TimeUnit.SECONDS);
            assertEquals(Collections.emptyList(), first.violations);
            s.append(5);
        }
    }

    @Test
    public void sessionCancelFromElsewhereIsOnError() throws Exception {
        try (Session s = model.newSession()) {
            s.append(model.tokenize(PROMPT, true));
            Recorder r = new Recorder(1);
            r.onEachPiece = rec -> {
                if (rec.pieces.size() == 2) s.cancel();
            };
            s.publish(options(100000)).subscribe(r);
            r.awaitTermination();
            assertTrue(r.error instanceof KimiLinearException.Cancelled);
            assertEquals(2, r.pieces.size());
        }
    }

    // ---- load progress ----------------------------------------------------------------------

    @Test
    public void loadProgressRisesToOne() {
        List<Float> seen = new ArrayList<>();
        try (Model m = Model.load(modelDir(), ModelOptions.defaults().withDevice("cpu"), f -> seen.add(f))) {
            assertTrue(m.hasTokenizer());
        }
        assertTrue(seen.size() >= 2);
        for (int i = 1; i < seen.size(); ++i) assertTrue("monotone", seen.get(i) >= seen.get(i - 1));
        assertTrue(seen.get(0) >= 0f);
        assertEquals(1.0f, seen.get(seen.size() - 1), 0f);
    }

    @Test
    public void loadProgressAborts() {
        AtomicInteger calls = new AtomicInteger();
        assertThrows(KimiLinearException.Cancelled.class,
                () -> Model.load(modelDir(), ModelOptions.defaults().withDevice("cpu"), f -> calls.incrementAndGet() < 3));
        assertEquals(3, calls.get()); // no call after the abort
        IllegalStateException boom = new IllegalStateException("boom");
        IllegalStateException thrown = assertThrows(IllegalStateException.class,
                () -> Model.load(modelDir(), ModelOptions.defaults().withDevice("cpu"), f -> {
                    throw boom;
                }));
        assertSame(boom, thrown); // the listener's own exception, the load's Cancelled suppressed in it
        assertTrue(thrown.getSuppressed()[0] instanceof KimiLinearException.Cancelled);
    }
}
