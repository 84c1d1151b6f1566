package baseimage.standin;

import java.io.IOException;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;

/**
 * Runtime interface client of the baseimage Java 17 stand-in image.
 *
 * <p>The AWS Java runtime client cannot be fetched on the build machines, so the
 * stand-in carries this one. It speaks the Lambda Runtime API (2018-06-01) at
 * {@code AWS_LAMBDA_RUNTIME_API} and supports this subset only:
 *
 * <ul>
 *   <li>{@code _HANDLER} is {@code com.example.Class::method} or {@code com.example.Class};
 *       the method defaults to {@code handleRequest}.
 *   <li>The class is loaded from the class path ({@code /var/runtime/lib/*},
 *       {@code /var/task}, {@code /var/task/lib/*}). The method must be public and take
 *       exactly one parameter of type {@code String}, {@code CharSequence} or
 *       {@code Object}; the first such method of that name is used. If it is not
 *       static, the class needs a public no-argument constructor; one instance
 *       serves every invocation.
 *   <li>The event is passed as its raw JSON text. There is no Context object, no
 *       POJO (de)serialisation, no RequestHandler/RequestStreamHandler interface,
 *       no streaming and no SnapStart hooks.
 *   <li>The result: {@code null} (or a void method) is sent as JSON {@code null};
 *       otherwise {@code toString()} of the result is sent as is when it is valid
 *       JSON text, and as a JSON string otherwise.
 *   <li>An exception from the method is posted to {@code /invocation/{id}/error} as
 *       {@code {"errorMessage", "errorType", "stackTrace"}}; the runtime then asks
 *       for the next event.
 *   <li>A handler that cannot be loaded, found or constructed is posted to
 *       {@code /init/error} and the process exits with status 1.
 * </ul>
 */
public final class LambdaRuntime {
    private static final String API_VERSION = "2018-06-01";

    private final HttpClient http =
            HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private final String base;

    private LambdaRuntime(String runtimeApi) {
        this.base = "http://" + runtimeApi + "/" + API_VERSION + "/runtime";
    }

    public static void main(String[] args) throws Exception {
        String api = System.getenv("AWS_LAMBDA_RUNTIME_API");
        String handler = System.getenv("_HANDLER");
        if (api == null || api.isEmpty()) {
            System.err.println("stand-in runtime: AWS_LAMBDA_RUNTIME_API is not set");
            System.exit(1);
        }
        try {
            new LambdaRuntime(api).run(handler == null ? "" : handler);
        } catch (IOException e) {
            // Lambda never closes the Runtime API under a running function; a test
            // harness does, once it has its answer.
            System.err.println("stand-in runtime: Runtime API at " + api + " unreachable: " + e);
            System.exit(1);
        }
    }

    private void run(String handlerName) throws IOException, InterruptedException {
        Handler handler;
        try {
            handler = Handler.load(handlerName);
        } catch (Throwable e) {
            Throwable cause = unwrap(e);
            System.err.println("stand-in runtime: cannot initialise handler '" + handlerName + "': " + cause);
            post(base + "/init/error", errorJson(cause), "Runtime.HandlerInitError");
            System.exit(1);
            return;
        }

        while (true) {
            HttpResponse<String> next = http.send(
                    HttpRequest.newBuilder(URI.create(base + "/invocation/next")).GET().build(),
                    HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            if (next.statusCode() != 200) {
                throw new IOException("GET /invocation/next answered " + next.statusCode());
            }
            String requestId = next.headers().firstValue("Lambda-Runtime-Aws-Request-Id")
                    .orElseThrow(() -> new IOException("no Lambda-Runtime-Aws-Request-Id header"));
            next.headers().firstValue("Lambda-Runtime-Trace-Id")
                    .ifPresent(trace -> System.setProperty("com.amazonaws.xray.traceHeader", trace));

            String invocation = base + "/invocation/" + requestId;
            Object result;
            try {
                result = handler.invoke(next.body());
            } catch (Throwable e) {
                Throwable cause = unwrap(e);
                System.err.println("stand-in runtime: handler failed: " + cause);
                post(invocation + "/error", errorJson(cause), "Unhandled");
                continue;
            }
            post(invocation + "/response", toJson(result), null);
        }
    }

    private void post(String url, String body, String errorType)
            throws IOException, InterruptedException {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(url))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8));
        if (errorType != null) {
            request.header("Lambda-Runtime-Function-Error-Type", errorType);
        }
        HttpResponse<String> response =
                http.send(request.build(), HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() / 100 != 2) {
            System.err.println("stand-in runtime: POST " + url + " answered " + response.statusCode());
        }
    }

    private static Throwable unwrap(Throwable e) {
        while ((e instanceof InvocationTargetException || e instanceof ExceptionInInitializerError)
                && e.getCause() != null) {
            e = e.getCause();
        }
        return e;
    }

    static String errorJson(Throwable e) {
        StringBuilder trace = new StringBuilder("[");
        StackTraceElement[] frames = e.getStackTrace();
        for (int i = 0; i < frames.length; i++) {
            if (i > 0) {
                trace.append(',');
            }
            trace.append(quote(frames[i].toString()));
        }
        trace.append(']');
        String message = e.getMessage() == null ? e.toString() : e.getMessage();
        return "{\"errorMessage\":" + quote(message)
                + ",\"errorType\":" + quote(e.getClass().getName())
                + ",\"stackTrace\":" + trace + "}";
    }

    static String toJson(Object result) {
        if (result == null) {
            return "null";
        }
        String text = result.toString();
        return JsonCheck.isJson(text) ? text : quote(text);
    }

    static String quote(String s) {
        StringBuilder out = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
            }
        }
        return out.append('"').toString();
    }

    /** The handler method named by _HANDLER, with its instance if it is not static. */
    private static final class Handler {
        private final Method method;
        private final Object target;

        private Handler(Method method, Object target) {
            this.method = method;
            this.target = target;
        }

        static Handler load(String name) throws ReflectiveOperationException {
            if (name.isEmpty()) {
                throw new IllegalArgumentException("_HANDLER is empty");
            }
            int sep = name.indexOf("::");
            String className = sep < 0 ? name : name.substring(0, sep);
            String methodName = sep < 0 ? "handleRequest" : name.substring(sep + 2);

            ClassLoader loader = Thread.currentThread().getContextClassLoader();
            Class<?> type = Class.forName(className, true, loader);
            Method found = null;
            for (Method m : type.getMethods()) {
                if (m.getName().equals(methodName) && m.getParameterCount() == 1
                        && m.getParameterTypes()[0].isAssignableFrom(String.class)) {
                    found = m;
                    break;
                }
            }
            if (found == null) {
                throw new NoSuchMethodException("no public method " + methodName
                        + "(String) in " + className + " (see the supported subset)");
            }
            Object instance = null;
            if (!Modifier.isStatic(found.getModifiers())) {
                Constructor<?> constructor = type.getConstructor();
                instance = constructor.newInstance();
            }
            return new Handler(found, instance);
        }

        Object invoke(String event) throws ReflectiveOperationException {
            return method.invoke(target, event);
        }
    }

    /** A strict check that a string is one JSON value (RFC 8259), nothing more. */
    static final class JsonCheck {
        private final String s;
        private int i;

        private JsonCheck(String s) {
            this.s = s;
        }

        static boolean isJson(String text) {
            JsonCheck check = new JsonCheck(text);
            try {
                check.space();
                check.value();
                check.space();
                return check.i == text.length();
            } catch (IllegalStateException | StackOverflowError e) {
                return false;
            }
        }

        private void value() {
            char c = peek();
            if (c == '{') {
                members('}', true);
            } else if (c == '[') {
                members(']', false);
            } else if (c == '"') {
                string();
            } else if (c == 't') {
                literal("true");
            } else if (c == 'f') {
                literal("false");
            } else if (c == 'n') {
                literal("null");
            } else {
                number();
            }
        }

        private void members(char close, boolean object) {
            i++;
            space();
            if (peek() == close) {
                i++;
                return;
            }
            while (true) {
                space();
                if (object) {
                    string();
                    space();
                    expect(':');
                    space();
                }
                value();
                space();
                char c = next();
                if (c == close) {
                    return;
                }
                if (c != ',') {
                    throw new IllegalStateException();
                }
            }
        }

        private void string() {
            expect('"');
            while (true) {
                char c = next();
                if (c == '"') {
                    return;
                }
                if (c < 0x20) {
                    throw new IllegalStateException();
                }
                if (c == '\\') {
                    char e = next();
                    if (e == 'u') {
                        for (int k = 0; k < 4; k++) {
                            if (Character.digit(next(), 16) < 0) {
                                throw new IllegalStateException();
                            }
                        }
                    } else if ("\"\\/bfnrt".indexOf(e) < 0) {
                        throw new IllegalStateException();
                    }
                }
            }
        }

        private void number() {
            int start = i;
            if (peek() == '-') {
                i++;
            }
            if (peek() == '0') {
                i++;
            } else {
                digits();
            }
            if (i < s.length() && s.charAt(i) == '.') {
                i++;
                digits();
            }
            if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
                i++;
                if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
                    i++;
                }
                digits();
            }
            if (i == start) {
                throw new IllegalStateException();
            }
        }

        private void digits() {
            int start = i;
            while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
            }
            if (i == start) {
                throw new IllegalStateException();
            }
        }

        private void literal(String word) {
            if (!s.startsWith(word, i)) {
                throw new IllegalStateException();
            }
            i += word.length();
        }

        private void space() {
            while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
        }

        private void expect(char c) {
            if (next() != c) {
                throw new IllegalStateException();
            }
        }

        private char peek() {
            if (i >= s.length()) {
                throw new IllegalStateException();
            }
            return s.charAt(i);
        }

        private char next() {
            char c = peek();
            i++;
            return c;
        }
    }
}
