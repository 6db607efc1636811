package ai.kimi.linear;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import org.junit.Test;

/**
 * {@link ModelOptions#devices()} reaches the library (kl_model_params.devices, issue 16): the tiny
 * model split over two CPU shards reports 2 devices and gives the whole model's logits (to 1e-5)
 * and greedy tokens; a bad list throws the library's status. Environment as KimiLinearTest's
 * (KL_TINY_MODEL).
 */
public class DevicesTest {
    private static final int[] PROMPT = {1, 5, 9, 2, 7, 11, 3};

    private static Path tinyModel() {
        String value = System.getenv("KL_TINY_MODEL");
        if (value == null || value.isEmpty()) fail("environment variable KL_TINY_MODEL is not set");
        return Paths.get(value);
    }

    private static ModelOptions cpu() {
        return ModelOptions.defaults().withDevice("cpu").withThreads(2);
    }

    /** The prompt's logits at every position, then 8 greedy tokens. */
    private record Run(int nDevices, float[] logits, int[] tokens) {}

    private static Run run(ModelOptions options) {
        try (Model m = Model.load(tinyModel(), options); Session s = m.newSession()) {
            float[] logits = s.appendWithAllLogits(PROMPT);
            int[] tokens = new int[8];
            for (int i = 0; i < tokens.length; ++i) tokens[i] = s.next().id();
            return new Run(m.info().nDevices(), logits, tokens);
        }
    }

    @Test
    public void twoCpuDevicesEqualTheWholeModel() {
        Run whole = run(cpu());
        assertEquals(1, whole.nDevices());
        Run split = run(cpu().withDevices(0, 1));
        assertEquals(2, split.nDevices());
        float scale = 0;
        for (float x : whole.logits()) scale = Math.max(scale, Math.abs(x));
        assertArrayEquals(whole.logits(), split.logits(), 1e-5f * scale);
        assertArrayEquals(whole.tokens(), split.tokens());
        Run one = run(cpu().withDevices(List.of(0))); // one device: the whole model
        assertEquals(1, one.nDevices());
        assertArrayEquals(whole.logits(), one.logits(), 0f);
    }

    private static void assertRefused(Status status, String fragment, int... devices) {
        KimiLinearException e = assertThrows(KimiLinearException.class,
                () -> Model.load(tinyModel(), cpu().withDevices(devices)).close());
        assertEquals(e.getMessage(), status, e.status());
        assertTrue(e.getMessage(), e.getMessage().contains(fragment));
    }

    @Test
    public void badListsThrowTheLibrarysStatus() {
        assertRefused(Status.INVALID_ARGUMENT, "devices[1] is 0, as devices[0] is", 0, 0);
        assertRefused(Status.INVALID_ARGUMENT, "n_devices is 9", 0, 1, 2, 3, 4, 5, 6, 7, 8);
        assertRefused(Status.INVALID_ARGUMENT, "devices[1] is -1", 0, -1);
        assertRefused(Status.UNSUPPORTED, "kda_num_heads", 0, 1, 2); // 3 does not divide 2 heads
    }

    @Test
    public void optionsCarryTheList() {
        assertEquals(List.of(), ModelOptions.defaults().devices());
        assertEquals(List.of(0, 1), ModelOptions.defaults().withDevices(0, 1).withThreads(2).devices());
        // The constructor from before the field: one device.
        assertEquals(List.of(), new ModelOptions(Device.CPU, 0, 1, 0, 0, WeightFormat.AUTO).devices());
        assertThrows(NullPointerException.class, () -> ModelOptions.defaults().withDevices((List<Integer>) null));
        assertThrows(NullPointerException.class,
                () -> ModelOptions.defaults().withDevices(java.util.Arrays.asList(0, null)));
    }
}
