package dev.tether.core.rpc;

import java.io.IOException;

/** A request got no answer in time; it was cancelled ({@code $/cancelRequest}). */
public class RequestTimeoutException extends IOException {
    public RequestTimeoutException(String message) {
        super(message);
    }
}
