using System;
using System.Runtime.InteropServices;
using KimiLinear.Internal;

namespace KimiLinear
{
    // Ownership of the C handles.
    //
    // Each kl_model* / kl_session* / klb_generator* lives in a SafeHandle: its critical finalizer is the safety
    // net for a Model/Session that was never disposed, and its reference count (DangerousAddRef
    // around every native call, see NativeHandle.Use) means a Dispose racing with a call on
    // another thread frees the handle only when that call is done, never under the library.
    //
    // ReleaseHandle frees through the SWIG glue's own P/Invoke entry points
    // (kimi_linear_nativePINVOKE.kl_model_free / kl_session_free / klb_generator_free, in
    // libkimi_linear_csharp)
    // rather than through a DllImport of kl_model_free from "kimi_linear", for two reasons:
    //  - the handle is freed by the very libkimi_linear instance that allocated it: the glue
    //    reaches the C library through its DT_NEEDED entry (libkimi_linear.so.<abi>, found by
    //    RUNPATH $ORIGIN), whereas DllImport("kimi_linear") makes mono dlopen
    //    "libkimi_linear.so", which in a NuGet layout (and anywhere the SONAME link and the
    //    dev link are separate files) is another file, so a second copy of the library with
    //    its own globals and thread-locals;
    //  - it needs nothing but the one native library the SWIG classes already load.
    // The raw PINVOKE call (not the kimi_linear_native wrapper) is used because it allocates
    // nothing (HandleRef is a struct) and kl_*_free cannot fail, so there is no pending
    // exception to check: both matter in a finalizer.

    /// <summary>A native handle with the use-count protocol shared by models, sessions and generators.</summary>
    internal abstract class NativeHandle : SafeHandle
    {
        protected NativeHandle(IntPtr ptr)
            : base(IntPtr.Zero, true)
        {
            SetHandle(ptr);
        }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        /// <summary>
        /// Runs <paramref name="body"/> with the raw pointer while holding a reference, so that
        /// a concurrent Dispose cannot free it mid-call; SWIG's exceptions become
        /// KimiLinearExceptions. Throws ObjectDisposedException once disposed.
        /// </summary>
        internal T Use<T>(string owner, Func<IntPtr, T> body)
        {
            IntPtr ptr = Hold(owner);
            try
            {
                return Native.Call(() => body(ptr));
            }
            finally
            {
                DangerousRelease();
            }
        }

        /// <summary>
        /// Takes a reference for a call that uses several handles at once (<see cref="Batch"/>):
        /// the raw pointer, valid until the matching DangerousRelease. Throws
        /// ObjectDisposedException once disposed.
        /// </summary>
        internal IntPtr Hold(string owner)
        {
            if (IsClosed) throw new ObjectDisposedException(owner);
            bool added = false;
            try
            {
                DangerousAddRef(ref added);
            }
            catch (ObjectDisposedException)
            {
                throw new ObjectDisposedException(owner); // disposed on another thread just now
            }
            if (!added) throw new ObjectDisposedException(owner);
            return handle;
        }
    }

    internal sealed class ModelHandle : NativeHandle
    {
        internal ModelHandle(IntPtr ptr) : base(ptr) { }

        protected override bool ReleaseHandle()
        {
            // The C library keeps the weights alive for sessions still open (each kl_session
            // holds a shared_ptr to the model), so this is safe while sessions live.
            kimi_linear_nativePINVOKE.kl_model_free(new HandleRef(this, handle));
            return true;
        }
    }

    internal sealed class SessionHandle : NativeHandle
    {
        internal SessionHandle(IntPtr ptr) : base(ptr) { }

        protected override bool ReleaseHandle()
        {
            kimi_linear_nativePINVOKE.kl_session_free(new HandleRef(this, handle));
            return true;
        }
    }

    /// <summary>
    /// A generation's klb_generator (a kl_generator): freeing it does not touch its session, so
    /// it may be freed after the session.
    /// </summary>
    internal sealed class GeneratorHandle : NativeHandle
    {
        internal GeneratorHandle(IntPtr ptr) : base(ptr) { }

        /// <summary>Its logits processor (null: none), alive as long as the generator.</summary>
        internal ProcessorThunk Processor { get; set; }

        /// <summary>How many alternatives each step reports; -1: no log-probabilities asked for.</summary>
        internal int TopLogprobs { get; set; } = -1;

        protected override bool ReleaseHandle()
        {
            kimi_linear_nativePINVOKE.klb_generator_free(new HandleRef(this, handle));
            return true;
        }
    }

    /// <summary>Calls into the SWIG classes, translating their exceptions.</summary>
    internal static class Native
    {
        internal static T Call<T>(Func<T> body)
        {
            try
            {
                return body();
            }
            catch (ApplicationException e)
            {
                KimiLinearException translated = KimiLinearException.FromSwig(e);
                if (translated == null) throw;
                throw translated;
            }
        }

        internal static void Call(Action body)
        {
            Call(() =>
            {
                body();
                return true;
            });
        }

        internal static SWIGTYPE_p_kl_model Model(IntPtr ptr)
        {
            return new SWIGTYPE_p_kl_model(ptr, false);
        }

        internal static SWIGTYPE_p_kl_session Session(IntPtr ptr)
        {
            return new SWIGTYPE_p_kl_session(ptr, false);
        }

        internal static SWIGTYPE_p_klb_generator Generator(IntPtr ptr)
        {
            return new SWIGTYPE_p_klb_generator(ptr, false);
        }

        internal static IntPtr Pointer(SWIGTYPE_p_kl_model model)
        {
            return SWIGTYPE_p_kl_model.getCPtr(model).Handle;
        }

        internal static IntPtr Pointer(SWIGTYPE_p_kl_session session)
        {
            return SWIGTYPE_p_kl_session.getCPtr(session).Handle;
        }

        internal static IntPtr Pointer(SWIGTYPE_p_klb_generator generator)
        {
            return SWIGTYPE_p_klb_generator.getCPtr(generator).Handle;
        }

        /// <summary>A size the library asked for, as an array length.</summary>
        internal static int ArrayLength(long size)
        {
            if (size < 0 || size > int.MaxValue - 64)
                throw new KimiLinearException.OutOfMemory(
                    "a result of " + size + " elements does not fit a .NET array");
            return (int)size;
        }
    }
}
