package ai.kimi.linear;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * How to load a model ({@code kl_model_params}): the device, the GPU ordinal, the CPU worker
 * threads (0 = all hardware threads) and decode batching across threads. Immutable; start from
 * {@link #defaults()}: {@code ModelOptions.defaults().withDevice("cpu").withThreads(4)}.
 *
 * <p>{@code maxBatch > 1}: one-token steps of this model's sessions that run at the same time on
 * different threads ({@link Session#next}, {@link Session#generate} steps) share one forward pass
 * of up to {@code maxBatch} sessions, each keeping its own results; {@code batchWaitUs} is how
 * long (microseconds) a step waits for the others. 0 or 1 (the default): each step runs alone.
 * The library bounds both (at most 4096 and 1000000: beyond, the load throws
 * {@link KimiLinearException.InvalidArgument}). To step several sessions from one thread, use
 * {@link Batch}.
 *
 * <p>{@code weights}: the linear weights' form once loaded ({@link WeightFormat}; default
 * {@link WeightFormat#AUTO}, as the checkpoint stores them): {@code withWeights("fp8")} quantizes
 * a bf16 checkpoint on load.
 *
 * <p>{@code devices}: the devices the model is split over, one shard each ({@code
 * kl_model_params.devices}, at most 8; {@link ModelInfo#nDevices()} reports it); empty (the
 * default) = one device, {@code deviceIndex}. On the CPU {@code withDevices(0, 1, ..., n - 1)}
 * runs n shards on threads (a check of the split, no faster); on CUDA the entries are GPU
 * ordinals, and more than one throws {@link KimiLinearException.Unsupported} unless the
 * environment has KL_CUDA_SHARDS=1 (CUDA shards over NCCL are built but not yet verified on
 * several GPUs). The library checks the list at load: more than 8, a negative or repeated
 * ordinal throw {@link KimiLinearException.InvalidArgument}; a count that does not divide the
 * model's heads, widths or experts {@link KimiLinearException.Unsupported}.
 */
public record ModelOptions(Device device, int deviceIndex, int threads, int maxBatch, int batchWaitUs,
                           WeightFormat weights, List<Integer> devices) {
    public ModelOptions {
        Objects.requireNonNull(device, "device");
        Objects.requireNonNull(weights, "weights");
        devices = List.copyOf(Objects.requireNonNull(devices, "devices")); // no null entries
        if (deviceIndex < 0) throw new IllegalArgumentException("deviceIndex < 0");
        if (threads < 0) throw new IllegalArgumentException("threads < 0");
        if (maxBatch < 0) throw new IllegalArgumentException("maxBatch < 0");
        if (batchWaitUs < 0) throw new IllegalArgumentException("batchWaitUs < 0");
    }

    /** Without decode batching (the options before it existed). */
    public ModelOptions(Device device, int deviceIndex, int threads) {
        this(device, deviceIndex, threads, 0, 0);
    }

    /** One device (the options before the device list existed). */
    public ModelOptions(Device device, int deviceIndex, int threads, int maxBatch, int batchWaitUs,
                        WeightFormat weights) {
        this(device, deviceIndex, threads, maxBatch, batchWaitUs, weights, List.of());
    }

    /** Weights as the checkpoint stores them (the options before the weight format existed). */
    public ModelOptions(Device device, int deviceIndex, int threads, int maxBatch, int batchWaitUs) {
        this(device, deviceIndex, threads, maxBatch, batchWaitUs, WeightFormat.AUTO);
    }

    /**
     * AUTO device, GPU 0, all hardware threads, no batching, weights as stored, one device (as
     * {@code kl_model_params_default}).
     */
    public static ModelOptions defaults() {
        return new ModelOptions(Device.AUTO, 0, 0, 0, 0, WeightFormat.AUTO, List.of());
    }

    public ModelOptions withDevice(Device device) {
        return new ModelOptions(device, deviceIndex, threads, maxBatch, batchWaitUs, weights, devices);
    }

    /** {@code "auto"}, {@code "cpu"} or {@code "cuda"}. */
    public ModelOptions withDevice(String device) {
        return withDevice(Device.parse(device));
    }

    public ModelOptions withDeviceIndex(int deviceIndex) {
        return new ModelOptions(device, deviceIndex, threads, maxBatch, batchWaitUs, weights, devices);
    }

    public ModelOptions withThreads(int threads) {
        return new ModelOptions(device, deviceIndex, threads, maxBatch, batchWaitUs, weights, devices);
    }

    public ModelOptions withMaxBatch(int maxBatch) {
        return new ModelOptions(device, deviceIndex, threads, maxBatch, batchWaitUs, weights, devices);
    }

    public ModelOptions withBatchWaitUs(int batchWaitUs) {
        return new ModelOptions(device, deviceIndex, threads, maxBatch, batchWaitUs, weights, devices);
    }

    public ModelOptions withWeights(WeightFormat weights) {
        return new ModelOptions(device, deviceIndex, threads, maxBatch, batchWaitUs, weights, devices);
    }

    /** {@code "auto"}, {@code "bf16"}, {@code "fp8"} or {@code "int4"}. */
    public ModelOptions withWeights(String weights) {
        return withWeights(WeightFormat.parse(weights));
    }

    /** The devices the model is split over (empty: one device, {@code deviceIndex}). */
    public ModelOptions withDevices(List<Integer> devices) {
        return new ModelOptions(device, deviceIndex, threads, maxBatch, batchWaitUs, weights, devices);
    }

    /** {@code withDevices(0, 1)}: the model split over two devices. */
    public ModelOptions withDevices(int... devices) {
        return withDevices(List.of(Arrays.stream(devices).boxed().toArray(Integer[]::new)));
    }
}
