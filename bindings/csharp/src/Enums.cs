namespace KimiLinear
{
    /// <summary>The outcome of a library call (<c>kl_status</c>, value for value).</summary>
    public enum Status
    {
        Ok = 0,
        InvalidArgument,
        Io,
        Format,
        Unsupported,
        OutOfMemory,
        ContextFull,
        Cancelled,
        Device,
        Internal,
        /// <summary>The session is in use by another call (one thread at a time); nothing was done.</summary>
        Busy,
    }

    /// <summary>Where a model runs (<c>kl_device</c>, value for value).</summary>
    public enum Device
    {
        /// <summary>CUDA when the library was built with it and a GPU is present, else the CPU.</summary>
        Auto = 0,
        Cpu,
        Cuda,
    }
}
