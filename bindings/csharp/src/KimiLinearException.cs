using System;
using KimiLinear.Internal;

namespace KimiLinear
{
    /// <summary>
    /// A failure reported by the Kimi Linear library: its <see cref="Status"/> and the library's
    /// message (<c>kl_last_error()</c>). Every status has a nested subclass, so callers catch
    /// exactly what they handle, e.g. <c>catch (KimiLinearException.ContextFull)</c>. (Nested,
    /// not top-level <c>FormatException</c>/<c>OutOfMemoryException</c>, which would collide
    /// with System's.) A failed call changes nothing: the session's position, state and last
    /// logits are as before (the C API's contract).
    /// </summary>
    [Serializable]
    public class KimiLinearException : Exception
    {
        public KimiLinearException(Status status, string message)
            : base(message)
        {
            Status = status;
        }

        /// <summary>The status the library returned.</summary>
        public Status Status { get; }

        /// <summary>The exception class for a status.</summary>
        public static KimiLinearException Of(Status status, string message)
        {
            switch (status)
            {
                case Status.InvalidArgument: return new InvalidArgument(message);
                case Status.Io: return new Io(message);
                case Status.Format: return new Format(message);
                case Status.Unsupported: return new Unsupported(message);
                case Status.OutOfMemory: return new OutOfMemory(message);
                case Status.ContextFull: return new ContextFull(message);
                case Status.Cancelled: return new Cancelled(message);
                case Status.Device: return new Device(message);
                case Status.Busy: return new Busy(message);
                default: return new Internal(message);
            }
        }

        /// <summary>
        /// The exception for the one the SWIG glue raised: bindings/swig/kimi_linear.i throws
        /// System.ApplicationException with the message "KL_ERR_NAME: kl_last_error() text".
        /// Null when <paramref name="e"/> is not such an exception.
        /// </summary>
        internal static KimiLinearException FromSwig(ApplicationException e)
        {
            string text = e.Message ?? "";
            int colon = text.IndexOf(": ", StringComparison.Ordinal);
            string name = colon >= 0 ? text.Substring(0, colon) : text;
            if (!name.StartsWith("KL_", StringComparison.Ordinal)) return null;
            kl_status status;
            if (!Enum.TryParse(name, false, out status) || status == kl_status.KL_OK)
                status = kl_status.KL_ERR_INTERNAL; // "KL_ERR_UNKNOWN": a status this binding does not know
            string message = colon >= 0 ? text.Substring(colon + 2) : "";
            return Of((Status)(int)status, message.Length > 0 ? message : name);
        }

        /// <summary><c>KL_ERR_INVALID_ARGUMENT</c>: an argument the library rejects (e.g. a token id past the vocabulary).</summary>
        [Serializable]
        public sealed class InvalidArgument : KimiLinearException
        {
            public InvalidArgument(string message) : base(Status.InvalidArgument, message) { }
        }

        /// <summary><c>KL_ERR_IO</c>: a file could not be read.</summary>
        [Serializable]
        public sealed class Io : KimiLinearException
        {
            public Io(string message) : base(Status.Io, message) { }
        }

        /// <summary><c>KL_ERR_FORMAT</c>: a file or snapshot is malformed or belongs to another model.</summary>
        [Serializable]
        public sealed class Format : KimiLinearException
        {
            public Format(string message) : base(Status.Format, message) { }
        }

        /// <summary><c>KL_ERR_UNSUPPORTED</c>: e.g. text functions on a model folder without a tokenizer.</summary>
        [Serializable]
        public sealed class Unsupported : KimiLinearException
        {
            public Unsupported(string message) : base(Status.Unsupported, message) { }
        }

        /// <summary><c>KL_ERR_OUT_OF_MEMORY</c>: host or device memory ran out.</summary>
        [Serializable]
        public sealed class OutOfMemory : KimiLinearException
        {
            public OutOfMemory(string message) : base(Status.OutOfMemory, message) { }
        }

        /// <summary><c>KL_ERR_CONTEXT_FULL</c>: the session's MLA cache cannot hold the tokens.</summary>
        [Serializable]
        public sealed class ContextFull : KimiLinearException
        {
            public ContextFull(string message) : base(Status.ContextFull, message) { }
        }

        /// <summary><c>KL_ERR_CANCELLED</c>: <see cref="Session.Cancel"/> stopped the call.</summary>
        [Serializable]
        public sealed class Cancelled : KimiLinearException
        {
            public Cancelled(string message) : base(Status.Cancelled, message) { }
        }

        /// <summary>
        /// <c>KL_ERR_DEVICE</c>: the GPU reported an error. (Inside this class the name Device is
        /// this exception; elsewhere it is the <see cref="KimiLinear.Device"/> enum.)
        /// </summary>
        [Serializable]
        public sealed class Device : KimiLinearException
        {
            public Device(string message) : base(Status.Device, message) { }
        }

        /// <summary><c>KL_ERR_INTERNAL</c>: a bug in the library.</summary>
        [Serializable]
        public sealed class Internal : KimiLinearException
        {
            public Internal(string message) : base(Status.Internal, message) { }
        }

        /// <summary>
        /// <c>KL_ERR_BUSY</c>: the session is in use by another call (a session is used by one
        /// thread at a time; only <see cref="Session.Cancel"/> and <see cref="Session.ClearCancel"/>
        /// may be called meanwhile). Nothing was done: retry when that call has returned.
        /// </summary>
        [Serializable]
        public sealed class Busy : KimiLinearException
        {
            public Busy(string message) : base(Status.Busy, message) { }
        }
    }
}
