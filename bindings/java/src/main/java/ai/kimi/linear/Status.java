package ai.kimi.linear;

/** The status codes of the C API ({@code kl_status}), in the same order and with the same values. */
public enum Status {
    OK,
    INVALID_ARGUMENT,
    IO,
    FORMAT,
    UNSUPPORTED,
    OUT_OF_MEMORY,
    CONTEXT_FULL,
    CANCELLED,
    DEVICE,
    INTERNAL,
    /** The session is in use by another call (one thread at a time); nothing was done. */
    BUSY;

    /** The {@code kl_status} value. */
    public int code() {
        return ordinal();
    }

    /** The status of a {@code kl_status} value; {@link #INTERNAL} for a value this version does not know. */
    public static Status of(int code) {
        Status[] all = values();
        return code >= 0 && code < all.length ? all[code] : INTERNAL;
    }

    /** The C name, e.g. {@code "KL_ERR_FORMAT"}. */
    public String cName() {
        return this == OK ? "KL_OK" : "KL_ERR_" + name();
    }
}
