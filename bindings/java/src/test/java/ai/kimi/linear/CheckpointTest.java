package ai.kimi.linear;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/**
 * {@link Checkpoint#quantize} (kl_checkpoint_quantize, issue 15): the tiny bf16 model written as
 * FP8 and INT4 checkpoints loads with {@link WeightFormat#AUTO} as the original loads with FP8 /
 * INT4 (the header's promise: the weights as that load holds them, so the same logits bit for
 * bit and the same greedy tokens); refused calls throw the library's status and leave nothing;
 * progress rises to 1.0, and false or an exception from it cancels the write, leaving nothing.
 * Environment as KimiLinearTest's (KL_TINY_MODEL).
 */
public class CheckpointTest {
    private static final int[] PROMPT = {1, 5, 9, 2, 7, 11, 3};

    private Path temp;

    private static Path tinyModel() {
        String value = System.getenv("KL_TINY_MODEL");
        if (value == null || value.isEmpty()) fail("environment variable KL_TINY_MODEL is not set");
        return Paths.get(value);
    }

    @Before
    public void makeTemp() throws IOException {
        temp = Files.createTempDirectory("kl-checkpoint-test");
    }

    @After
    public void removeTemp() throws IOException {
        removeTree(temp);
    }

    /** The prompt's logits at every position, then 8 greedy tokens. */
    private record Run(float[] logits, int[] tokens) {}

    private static Run run(Path dir, WeightFormat weights) {
        ModelOptions options = ModelOptions.defaults().withDevice("cpu").withThreads(2).withWeights(weights);
        try (Model m = Model.load(dir, options); Session s = m.newSession()) {
            float[] logits = s.appendWithAllLogits(PROMPT);
            int[] tokens = new int[8];
            for (int i = 0; i < tokens.length; ++i) tokens[i] = s.next().id();
            return new Run(logits, tokens);
        }
    }

    private static String read(Path file) {
        try {
            return new String(Files.readAllBytes(file), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static List<String> names(Path dir) throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            return files.map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList());
        }
    }

    @Test
    public void aQuantizedCheckpointLoadsAsTheOnLoadQuantization() {
        float[] bf16 = run(tinyModel(), WeightFormat.AUTO).logits();
        for (WeightFormat format : new WeightFormat[] {WeightFormat.FP8, WeightFormat.INT4}) {
            Path out = temp.resolve(format.name()); // made by the call
            Checkpoint.quantize(tinyModel(), out, format);
            String config = read(out.resolve("config.json"));
            assertTrue(config, config.contains("\"quantization_config\""));
            assertTrue(config, config.contains(format == WeightFormat.FP8 ? "\"fp8\"" : "\"pack-quantized\""));
            assertTrue(Files.isRegularFile(out.resolve("model.safetensors.index.json")));
            Run want = run(tinyModel(), format);
            Run got = run(out, WeightFormat.AUTO);
            assertArrayEquals(format + ": the logits of the on-load quantization", want.logits(), got.logits(), 0f);
            assertArrayEquals(format + ": its greedy tokens", want.tokens(), got.tokens());
            assertFalse(format + " is not the bf16 model", Arrays.equals(bf16, got.logits()));
        }
    }

    @Test
    public void shardBytesSplitTheTensors() throws IOException {
        Checkpoint.quantize(tinyModel(), temp, WeightFormat.INT4, 1000); // an empty folder: used
        long shards = names(temp).stream().filter(n -> n.endsWith(".safetensors")).count();
        assertTrue(shards + " shards", shards > 2);
        assertArrayEquals(run(tinyModel(), WeightFormat.INT4).logits(), run(temp, WeightFormat.AUTO).logits(), 0f);
    }

    @Test
    public void refusedCallsThrowTheLibraryStatus() throws IOException {
        Path used = Files.createDirectory(temp.resolve("used"));
        Files.write(used.resolve("notes.txt"), "mine".getBytes(StandardCharsets.UTF_8));
        KimiLinearException e = assertThrows(KimiLinearException.InvalidArgument.class,
                () -> Checkpoint.quantize(tinyModel(), used, WeightFormat.INT4));
        assertEquals(Status.INVALID_ARGUMENT, e.status());
        assertTrue(e.getMessage(), e.getMessage().contains("not empty"));
        assertEquals(List.of("notes.txt"), names(used)); // untouched

        Path never = temp.resolve("never");
        e = assertThrows(KimiLinearException.Io.class,
                () -> Checkpoint.quantize(temp.resolve("missing"), never, WeightFormat.FP8));
        assertEquals(Status.IO, e.status());
        assertTrue(e.getMessage(), e.getMessage().contains("config.json"));
        for (WeightFormat format : new WeightFormat[] {WeightFormat.AUTO, WeightFormat.BF16}) {
            e = assertThrows(KimiLinearException.InvalidArgument.class,
                    () -> Checkpoint.quantize(tinyModel(), never, format));
            assertTrue(e.getMessage(), e.getMessage().contains("KL_WEIGHTS_FP8 or KL_WEIGHTS_INT4"));
        }
        assertThrows(IllegalArgumentException.class, () -> Checkpoint.quantize(tinyModel(), never, WeightFormat.FP8, -1));
        assertThrows(NullPointerException.class, () -> Checkpoint.quantize(tinyModel(), never, null));
        assertFalse("a refused call made no folder", Files.exists(never));
    }

    @Test
    public void progressRisesToExactlyOne() {
        List<Float> seen = new ArrayList<>();
        Path out = temp.resolve("q");
        Checkpoint.quantize(tinyModel(), out, WeightFormat.FP8, 1000, f -> seen.add(f));
        assertTrue(seen.size() + " calls", seen.size() > 3);
        for (int i = 0; i < seen.size(); ++i) {
            assertTrue(seen.toString(), seen.get(i) >= 0f && seen.get(i) <= 1f);
            if (i > 0) assertTrue("call " + i + " went back: " + seen, seen.get(i) >= seen.get(i - 1));
        }
        assertEquals(1f, seen.get(seen.size() - 1), 0f);
        assertTrue("1.0 only at the end", seen.get(seen.size() - 2) < 1f);
        assertArrayEquals(run(tinyModel(), WeightFormat.FP8).logits(), run(out, WeightFormat.AUTO).logits(), 0f);
    }

    @Test
    public void falseFromProgressCancelsAndLeavesNothing() throws IOException {
        List<Float> whole = new ArrayList<>();
        Checkpoint.quantize(tinyModel(), temp.resolve("whole"), WeightFormat.INT4, 1000, f -> whole.add(f));
        for (int stop : new int[] {1, whole.size() / 2}) {
            int[] calls = {0};
            Path out = temp.resolve("q"); // made by the call
            KimiLinearException e = assertThrows(KimiLinearException.Cancelled.class,
                    () -> Checkpoint.quantize(tinyModel(), out, WeightFormat.INT4, 1000, f -> ++calls[0] < stop));
            assertEquals(Status.CANCELLED, e.status());
            assertTrue(e.getMessage(), e.getMessage().contains("cancelled"));
            assertEquals("no call after the stop", stop, calls[0]);
            assertFalse("stop at " + stop + " left " + out, Files.exists(out));
            Path empty = Files.createDirectory(temp.resolve("empty" + stop)); // there before: left empty
            calls[0] = 0;
            assertThrows(KimiLinearException.Cancelled.class,
                    () -> Checkpoint.quantize(tinyModel(), empty, WeightFormat.INT4, 1000, f -> ++calls[0] < stop));
            assertEquals(List.of(), names(empty));
            Checkpoint.quantize(tinyModel(), out, WeightFormat.INT4, 1000, null); // then a whole write
            assertEquals(names(temp.resolve("whole")), names(out));
            removeTree(out);
        }
    }

    @Test
    public void anExceptionFromProgressCancelsAndIsRethrown() {
        IllegalStateException boom = new IllegalStateException("stop here");
        Path out = temp.resolve("q");
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> Checkpoint.quantize(tinyModel(), out, WeightFormat.FP8, 1000, f -> {
                    throw boom;
                }));
        assertTrue(e == boom);
        assertTrue("the library's Cancelled is kept as suppressed",
                e.getSuppressed().length == 1 && e.getSuppressed()[0] instanceof KimiLinearException.Cancelled);
        assertFalse(Files.exists(out));
    }

    private static void removeTree(Path dir) throws IOException {
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).collect(Collectors.toList())) Files.delete(p);
        }
    }
}
