package dev.tether.core.rpc;

import java.io.IOException;

/** The connection to the daemon is gone (or was never there): the request was not answered. */
public class ConnectionClosedException extends IOException {
    public ConnectionClosedException(String message) {
        super(message);
    }

    public ConnectionClosedException(String message, Throwable cause) {
        super(message, cause);
    }
}
