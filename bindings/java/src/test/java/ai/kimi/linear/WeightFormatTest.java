package ai.kimi.linear;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import org.junit.Test;

/**
 * {@link ModelOptions#weights()} reaches the library (kl_model_params.weight_format): on the
 * bf16 tiny model BF16 gives the logits of the default load bit for bit, FP8 and INT4 (quantized
 * on load) other but close ones; bad names are refused before any load. Environment as
 * KimiLinearTest's (KL_TINY_MODEL).
 */
public class WeightFormatTest {
    private static final int[] PROMPT = {1, 5, 9, 2, 7};

    private static Path tinyModel() {
        String value = System.getenv("KL_TINY_MODEL");
        if (value == null || value.isEmpty()) fail("environment variable KL_TINY_MODEL is not set");
        return Paths.get(value);
    }

    private static float[] lastLogits(WeightFormat weights) {
        ModelOptions options = ModelOptions.defaults().withDevice("cpu").withThreads(1).withWeights(weights);
        try (Model m = Model.load(tinyModel(), options); Session s = m.newSession()) {
            return s.appendWithLogits(PROMPT);
        }
    }

    private static double meanAbs(float[] a) {
        double sum = 0;
        for (float x : a) sum += Math.abs(x);
        return sum / a.length;
    }

    @Test
    public void weightsReachTheLibrary() {
        float[] stored = lastLogits(WeightFormat.AUTO);
        assertArrayEquals("a bf16 checkpoint loaded as bf16 is as stored", stored, lastLogits(WeightFormat.BF16), 0f);
        for (WeightFormat format : new WeightFormat[] {WeightFormat.FP8, WeightFormat.INT4}) {
            float[] quantized = lastLogits(format);
            assertFalse(format + " changes the logits", Arrays.equals(stored, quantized));
            float[] error = new float[stored.length];
            for (int i = 0; i < stored.length; ++i) error[i] = quantized[i] - stored[i];
            assertTrue(format + " stays close", meanAbs(error) < meanAbs(stored));
        }
    }

    @Test
    public void optionsCarryTheFormat() {
        assertEquals(WeightFormat.AUTO, ModelOptions.defaults().weights());
        assertEquals(WeightFormat.INT4, ModelOptions.defaults().withWeights("Int4").weights());
        // The constructor from before the field keeps the stored weights.
        assertEquals(WeightFormat.AUTO, new ModelOptions(Device.CPU, 0, 1, 2, 3).weights());
        // Other options keep the format.
        assertEquals(WeightFormat.FP8, ModelOptions.defaults().withWeights(WeightFormat.FP8).withThreads(2).weights());
    }

    @Test
    public void badFormatsAreRefused() {
        IllegalArgumentException e =
                assertThrows(IllegalArgumentException.class, () -> ModelOptions.defaults().withWeights("fp4"));
        assertTrue(e.getMessage(), e.getMessage().contains("fp4") && e.getMessage().contains("int4"));
        assertThrows(NullPointerException.class, () -> ModelOptions.defaults().withWeights((WeightFormat) null));
    }
}
