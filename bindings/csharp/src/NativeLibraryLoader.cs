using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;

namespace KimiLinear
{
    /// <summary>
    /// Finds and loads the native glue (libkimi_linear_csharp.so, which needs
    /// libkimi_linear.so.&lt;abi&gt; beside it) before the first P/Invoke, so that neither mono nor
    /// .NET has to be told where the package keeps it (no MONO_PATH, no LD_LIBRARY_PATH).
    /// </summary>
    /// <remarks>
    /// It looks, in order, next to KimiLinear.dll (a build output the package's
    /// build/KimiLinear.targets copied the libraries into), in runtimes/linux-x64/native under
    /// it (a .NET output folder) and in ../../runtimes/linux-x64/native (KimiLinear.dll used
    /// from the unpacked package itself), then asks the system's loader for the bare name
    /// (LD_LIBRARY_PATH, ldconfig). The glue is opened by its full path; its SONAME is its file
    /// name, so the runtime's own DllImport("kimi_linear_csharp") then finds the copy already
    /// loaded. If none loads, every call that would reach the library throws a
    /// DllNotFoundException naming the files, where they were looked for and what the loader
    /// said, rather than a TypeInitializationException from the generated classes.
    /// Only linux-x64 is packaged; on Windows the runtime's default search is left alone.
    /// </remarks>
    internal static class NativeLibraryLoader
    {
        internal const string Glue = "libkimi_linear_csharp.so";
        internal static readonly string Library = "libkimi_linear.so." + BuildInfo.AbiVersion;
        private const string PackageFolder = "runtimes/linux-x64/native";
        private const int RTLD_NOW = 2;

        private static readonly object Gate = new object();
        private static bool loaded;
        private static string failure; // the message, once every place failed

        [DllImport("libdl.so.2", EntryPoint = "dlopen")]
        private static extern IntPtr DlOpen(string file, int mode);

        [DllImport("libdl.so.2", EntryPoint = "dlerror")]
        private static extern IntPtr DlError();

        /// <summary>Loads the glue once; throws DllNotFoundException (each call) when it cannot.</summary>
        internal static void EnsureLoaded()
        {
            lock (Gate)
            {
                if (!loaded && failure == null)
                {
                    if (Environment.OSVersion.Platform != PlatformID.Unix)
                        loaded = true;
                    else
                        Load();
                }
                if (failure != null)
                    throw new DllNotFoundException(failure);
            }
        }

        private static void Load()
        {
            var tried = new List<string>();
            foreach (string dir in Folders())
            {
                string path = Path.Combine(dir, Glue);
                if (!File.Exists(path))
                {
                    tried.Add(dir + " (no " + Glue + ")");
                    continue;
                }
                string reason = Open(path);
                if (reason == null)
                {
                    loaded = true;
                    return;
                }
                tried.Add(dir + " (" + reason + ")");
            }
            string fromSystem = Open(Glue);
            if (fromSystem == null)
            {
                loaded = true;
                return;
            }
            tried.Add("the system's library path (" + fromSystem + ")");
            failure = "KimiLinear cannot load its native library " + Glue + ", which needs " + Library +
                      " in the same folder (both ship in the NuGet package's " + PackageFolder +
                      "/; build/KimiLinear.targets copies them next to the application). Looked in: " +
                      string.Join("; ", tried) + ".";
        }

        /// <summary>dlopen: null on success, else the loader's reason (dlerror).</summary>
        private static string Open(string file)
        {
            try
            {
                if (DlOpen(file, RTLD_NOW) != IntPtr.Zero)
                    return null;
                IntPtr error = DlError();
                return error == IntPtr.Zero ? "dlopen failed" : Marshal.PtrToStringAnsi(error);
            }
            catch (DllNotFoundException) // no libdl.so.2 (not glibc): leave it to the runtime's search
            {
                return null;
            }
        }

        private static IEnumerable<string> Folders()
        {
            string location = typeof(NativeLibraryLoader).Assembly.Location;
            if (string.IsNullOrEmpty(location)) // loaded from bytes: no folder of its own
                yield break;
            string here = Path.GetDirectoryName(Path.GetFullPath(location));
            yield return here;
            yield return Path.Combine(here, PackageFolder);
            yield return Path.GetFullPath(Path.Combine(here, "..", "..", PackageFolder));
        }
    }
}
