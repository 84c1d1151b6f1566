package baseimage_probe;

import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * baseimage's probe handler for Java images; compiled and mounted at test time only.
 *
 * <p>{@code baseimage test} compiles this class on the host against the image's company
 * jars and bind-mounts the result read-only at /var/task/baseimage_probe, which the
 * Lambda class path (/var/task) covers. The handler is
 * {@code baseimage_probe.LambdaProbe::handleRequest}: a public instance method taking
 * one {@code Object}, which both the AWS Java runtime client (the event as a
 * deserialised POJO) and the stand-in's client (the event as JSON text) accept. It
 * returns JSON text; the AWS client sends it as a JSON string, the stand-in as is.
 *
 * <p>Settings come in BASEIMAGE_PROBE as {@code marker=...;classes=a,b;files=x,y}.
 * Logging is reached by reflection, so the probe works whatever logging jars the
 * company layer has, and reports what it finds.
 */
public class LambdaProbe {
    private static final long LOADED_AT = System.nanoTime();
    private static final String SETTINGS = Optional.ofNullable(System.getenv("BASEIMAGE_PROBE")).orElse("");
    private static final List<String> CLASS_RESULTS = new ArrayList<>();
    private static final double CLASS_LOAD_MS;

    static {
        long started = System.nanoTime();
        ClassLoader loader = LambdaProbe.class.getClassLoader();
        for (String name : setting("classes")) {
            CLASS_RESULTS.add(loadClass(name, loader));
        }
        CLASS_LOAD_MS = (System.nanoTime() - started) / 1e6;
    }

    public String handleRequest(Object event) {
        StringBuilder out = new StringBuilder("{");
        field(out, "probe", quote("java")).append(',');
        field(out, "java", quote(System.getProperty("java.version"))).append(',');
        field(out, "vm", quote(System.getProperty("java.vm.name"))).append(',');
        field(out, "class_path", quote(System.getProperty("java.class.path"))).append(',');
        field(out, "jvm_start_to_probe_ms", jvmStartToProbeMs()).append(',');
        field(out, "import_ms", String.valueOf(CLASS_LOAD_MS)).append(',');
        field(out, "event_type", quote(event == null ? "null" : event.getClass().getName())).append(',');
        field(out, "classes", "[" + String.join(",", CLASS_RESULTS) + "]").append(',');
        field(out, "files", files()).append(',');
        field(out, "logging", logging());
        return out.append('}').toString();
    }

    private static String loadClass(String name, ClassLoader loader) {
        try {
            Class<?> type = Class.forName(name, false, loader);
            String from = type.getProtectionDomain().getCodeSource() == null
                    ? "" : String.valueOf(type.getProtectionDomain().getCodeSource().getLocation());
            return "{\"name\":" + quote(name) + ",\"ok\":true,\"location\":" + quote(from) + "}";
        } catch (Throwable e) {
            return "{\"name\":" + quote(name) + ",\"ok\":false,\"error\":" + quote(e.toString()) + "}";
        }
    }

    private static String files() {
        List<String> results = new ArrayList<>();
        for (String path : setting("files")) {
            try {
                Files.readAllBytes(Paths.get(path));
                results.add("{\"path\":" + quote(path) + ",\"ok\":true}");
            } catch (Exception e) {
                results.add("{\"path\":" + quote(path) + ",\"ok\":false,\"error\":" + quote(e.toString()) + "}");
            }
        }
        return "[" + String.join(",", results) + "]";
    }

    /** Log4j's context and configuration, found by reflection, and one logged line. */
    private static String logging() {
        StringBuilder out = new StringBuilder("{");
        try {
            Class<?> manager = Class.forName("org.apache.logging.log4j.LogManager");
            Object context = manager.getMethod("getContext", boolean.class).invoke(null, false);
            field(out, "context", quote(context.getClass().getName())).append(',');
            try {
                Object config = call(context, "getConfiguration");
                Object source = call(config, "getConfigurationSource");
                field(out, "configuration", quote(config.getClass().getName())).append(',');
                field(out, "location", quote(String.valueOf(call(source, "getLocation")))).append(',');
            } catch (ReflectiveOperationException e) {
                field(out, "location_error", quote(String.valueOf(rootCause(e)))).append(',');
            }
            Object logger = manager.getMethod("getLogger", String.class).invoke(null, "baseimage.probe");
            Method info = logger.getClass().getMethod("info", String.class);
            info.invoke(logger, "baseimage probe " + String.join("", setting("marker")));
            field(out, "ok", "true");
        } catch (Throwable e) {
            field(out, "ok", "false").append(',');
            field(out, "error", quote(String.valueOf(rootCause(e))));
        }
        return out.append('}').toString();
    }

    private static Object call(Object target, String method) throws ReflectiveOperationException {
        return target.getClass().getMethod(method).invoke(target);
    }

    private static Throwable rootCause(Throwable e) {
        while (e.getCause() != null && e.getCause() != e) {
            e = e.getCause();
        }
        return e;
    }

    /** JVM start (as the JVM records it) to this class being loaded, in ms. */
    private static String jvmStartToProbeMs() {
        try {
            long jvmStart = java.lang.management.ManagementFactory.getRuntimeMXBean().getStartTime();
            long loadedAt = System.currentTimeMillis() - (System.nanoTime() - LOADED_AT) / 1_000_000;
            return String.valueOf(loadedAt - jvmStart);
        } catch (Throwable e) {  // a runtime without java.management
            return "null";
        }
    }

    private static List<String> setting(String key) {
        List<String> values = new ArrayList<>();
        for (String part : SETTINGS.split(";")) {
            int eq = part.indexOf('=');
            if (eq > 0 && part.substring(0, eq).equals(key)) {
                for (String value : part.substring(eq + 1).split(",")) {
                    if (!value.isEmpty()) {
                        values.add(value);
                    }
                }
            }
        }
        return values;
    }

    private static StringBuilder field(StringBuilder out, String name, String json) {
        return out.append(quote(name)).append(':').append(json);
    }

    private static String quote(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder out = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.append('"').toString();
    }
}
