package check;

/** Handler the stand-in check runs inside the Java image. */
public class Hello {
    public String handleRequest(String event) {
        // The event is raw JSON text; the result is valid JSON, so it is sent as is.
        return "{\"echo\":" + event + ",\"runtime\":\"java" + Runtime.version().feature() + "\"}";
    }
}
