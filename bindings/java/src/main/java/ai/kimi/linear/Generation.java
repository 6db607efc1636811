package ai.kimi.linear;

import ai.kimi.linear.internal.SWIGTYPE_p_klb_generator;
import ai.kimi.linear.internal.kimi_linear_native;
import ai.kimi.linear.internal.kimi_linear_nativeConstants;
import ai.kimi.linear.internal.kl_end_reason;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import java.util.NoSuchElementException;

/**
 * The pieces of one {@link Session#generate} call, produced as they are read: each
 * {@link #hasNext()} that needs a new piece runs one step of the C library's generator
 * ({@code kl_generator_next}), which holds the whole generation loop: sampling, stop tokens,
 * UTF-8 assembly and stop strings. See {@link Session#generate} for the stop rules.
 *
 * <p>The native generator is freed when the generation ends (or fails), on {@link #close()}
 * (reading on after a close throws {@link IllegalStateException}), and by a
 * {@link java.lang.ref.Cleaner} for a generation dropped unfinished.
 */
public final class Generation extends NativeResource implements Iterator<String> {
    /** Why generation ended. */
    public enum StopReason {
        /** still running */
        NONE,
        MAX_TOKENS,
        STOP_TOKEN,
        STOP_STRING,
        /** a call failed (the exception was thrown) */
        ERROR
    }

    private final Session session;
    private final SWIGTYPE_p_klb_generator handle;
    private byte[] piece = new byte[256];
    private String ready; // the piece read ahead by hasNext
    private int generated;
    private StopReason reason = StopReason.NONE;

    Generation(Session session, SWIGTYPE_p_klb_generator handle) {
        super("generation", () -> kimi_linear_native.klb_generator_free(handle));
        this.session = session;
        this.handle = handle;
    }

    @Override
    public boolean hasNext() {
        while (ready == null && reason == StopReason.NONE) step();
        return ready != null;
    }

    @Override
    public String next() {
        if (!hasNext()) throw new NoSuchElementException();
        String out = ready;
        ready = null;
        return out;
    }

    /** Tokens appended so far (stop tokens and the tokens of a stop string included). */
    public int generatedTokens() {
        return generated;
    }

    /** Why generation ended ({@link StopReason#NONE} while it runs). */
    public StopReason stopReason() {
        return reason;
    }

    /** One generator step; its text is passed on the way kl_session_generate passes it on. */
    private void step() {
        acquire();
        try {
            int token;
            try {
                token = session.generatorNext(handle);
            } catch (RuntimeException e) {
                reason = StopReason.ERROR;
                throw e;
            }
            kl_end_reason end = kimi_linear_native.klb_generator_end(handle);
            generated = (int) kimi_linear_native.klb_generator_generated(handle);
            String text = pieceText();
            // A token's text, even empty; the ending step without a token (or with a stop
            // token) carries only text that was still held back, if any.
            boolean tokenPiece = token != kimi_linear_nativeConstants.KL_NO_TOKEN && end != kl_end_reason.KL_END_STOP_TOKEN;
            if (tokenPiece || !text.isEmpty()) ready = text;
            reason = stopReason(end);
        } finally {
            release();
            if (reason != StopReason.NONE) close();
        }
    }

    private String pieceText() {
        for (;;) {
            long n = kimi_linear_native.klb_generator_piece(handle, piece);
            if (n >= 0) return new String(piece, 0, (int) n, StandardCharsets.UTF_8);
            piece = new byte[Model.checkedSize(-n)];
        }
    }

    private static StopReason stopReason(kl_end_reason end) {
        switch (end) {
            case KL_END_NONE:
                return StopReason.NONE;
            case KL_END_LENGTH:
                return StopReason.MAX_TOKENS;
            case KL_END_STOP_TOKEN:
                return StopReason.STOP_TOKEN;
            case KL_END_STOP_STRING:
                return StopReason.STOP_STRING;
            default:
                throw new IllegalStateException("unexpected end of generation: " + end);
        }
    }
}
