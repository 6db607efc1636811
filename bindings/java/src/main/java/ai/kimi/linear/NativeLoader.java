package ai.kimi.linear;

import ai.kimi.linear.internal.kimi_linear_nativeConstants;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

/**
 * Loads the JNI library. First {@code System.loadLibrary("kimi_linear_jni")} (java.library.path;
 * the library finds libkimi_linear.so.1 next to itself through its $ORIGIN rpath, or through the
 * system's search path); failing that, the copies inside the jar,
 * {@code /native/<os>-<arch>/libkimi_linear.so.<abi>} and {@code libkimi_linear_jni.so}, are
 * extracted to a temporary folder and loaded in that order, with the CUDA backend's plugin
 * {@code libkimi_linear_cuda.so.<abi>} when the jar has it (a build with CUDA; the C library
 * opens it from its own folder, so it stays there until the JVM exits). Called by the generated JNI class's
 * static initializer, so nothing needs to call it first; calling it is harmless.
 */
public final class NativeLoader {
    /** The JNI library's name for System.loadLibrary. */
    public static final String JNI_LIBRARY = "kimi_linear_jni";

    private static boolean loaded;

    private NativeLoader() {}

    /** "linux-x86_64", "linux-aarch64", ...: the folder under /native/ in the jar. */
    public static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        if (os.startsWith("linux")) os = "linux";
        else if (os.startsWith("mac") || os.startsWith("darwin")) os = "macos";
        else if (os.startsWith("windows")) os = "windows";
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        if (arch.equals("amd64") || arch.equals("x86-64")) arch = "x86_64";
        else if (arch.equals("arm64")) arch = "aarch64";
        return os + "-" + arch;
    }

    public static synchronized void load() {
        if (loaded) return;
        UnsatisfiedLinkError fromPath;
        try {
            System.loadLibrary(JNI_LIBRARY);
            loaded = true;
            return;
        } catch (UnsatisfiedLinkError e) {
            fromPath = e;
        }
        try {
            loadFromJar();
            loaded = true;
        } catch (IOException | UnsatisfiedLinkError e) {
            UnsatisfiedLinkError error = new UnsatisfiedLinkError(
                    "cannot load " + System.mapLibraryName(JNI_LIBRARY) + " from java.library.path ("
                            + fromPath.getMessage() + ") nor from the jar (" + e + ")");
            error.initCause(e);
            throw error;
        }
    }

    private static void loadFromJar() throws IOException {
        String folder = "/native/" + platform() + "/";
        String[] libraries = {
            "libkimi_linear.so." + kimi_linear_nativeConstants.KL_ABI_VERSION, // the C library first
            System.mapLibraryName(JNI_LIBRARY),
        };
        Path dir = Files.createTempDirectory("kimi-linear-jni");
        dir.toFile().deleteOnExit();
        String plugin = "libkimi_linear_cuda.so." + kimi_linear_nativeConstants.KL_ABI_VERSION;
        try (InputStream in = NativeLoader.class.getResourceAsStream(folder + plugin)) {
            if (in != null) { // opened by the C library when a model asks for CUDA: kept until exit
                Files.copy(in, dir.resolve(plugin), StandardCopyOption.REPLACE_EXISTING);
                dir.resolve(plugin).toFile().deleteOnExit();
            }
        }
        Path[] files = new Path[libraries.length];
        for (int i = 0; i < libraries.length; ++i) {
            try (InputStream in = NativeLoader.class.getResourceAsStream(folder + libraries[i])) {
                if (in == null) throw new IOException("the jar has no " + folder + libraries[i]);
                files[i] = dir.resolve(libraries[i]);
                Files.copy(in, files[i], StandardCopyOption.REPLACE_EXISTING);
            }
        }
        try {
            for (Path file : files) System.load(file.toAbsolutePath().toString());
        } finally {
            // Loaded libraries stay mapped after their files are gone (Linux, macOS); where a
            // loaded file cannot be deleted (Windows) it goes when the JVM exits.
            for (Path file : files) deleteSoonest(file);
            if (!Files.exists(dir.resolve(plugin))) deleteSoonest(dir);
        }
    }

    private static void deleteSoonest(Path path) {
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            path.toFile().deleteOnExit();
        }
    }
}
