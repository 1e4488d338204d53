package dev.tether.core.rpc;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;

/**
 * A blocking Unix-domain socket as a pair of streams. {@code Channels.newInputStream} is not
 * used on purpose: its streams lock the channel's blocking lock for every read and write, so a
 * reader waiting for the daemon would block every writer.
 */
public final class UnixSocketTransport {
    private UnixSocketTransport() {}

    /** Connects to {@code socket}; fails fast (no retry) when nobody listens. */
    public static JsonRpcConnection connect(Path socket, String name) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            ch.connect(UnixDomainSocketAddress.of(socket));
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
        return new JsonRpcConnection(name, new In(ch), new Out(ch), ch);
    }

    private static final class In extends InputStream {
        private final SocketChannel ch;
        private final ByteBuffer one = ByteBuffer.allocate(1);

        In(SocketChannel ch) {
            this.ch = ch;
        }

        @Override
        public int read() throws IOException {
            one.clear();
            int n;
            do {
                n = ch.read(one);
            } while (n == 0);
            return n < 0 ? -1 : one.get(0) & 0xff;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (len == 0) {
                return 0;
            }
            int n;
            do {
                n = ch.read(ByteBuffer.wrap(b, off, len));
            } while (n == 0);
            return n;
        }

        @Override
        public void close() throws IOException {
            ch.close();
        }
    }

    private static final class Out extends OutputStream {
        private final SocketChannel ch;

        Out(SocketChannel ch) {
            this.ch = ch;
        }

        @Override
        public void write(int b) throws IOException {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            ByteBuffer buf = ByteBuffer.wrap(b, off, len);
            while (buf.hasRemaining()) {
                ch.write(buf);
            }
        }

        @Override
        public void close() throws IOException {
            ch.close();
        }
    }
}
