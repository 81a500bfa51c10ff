// garage-sign's way into tuf-reposerver, for tests/test_build_tools_tls.py: read
// credentials.zip as ota-tuf's ZipRepoInitialization.init does
// (cli/src/main/scala/com/advancedtelematic/tuf/cli/repo/RepoManagement.scala, 1d0d714 and
// the newest commit), load client_auth.p12 and server.p12 as AuthenticatedHttpBackend.mutualTls
// does (cli/.../http/AuthenticatedHttpBackend.scala: KeyStore "PKCS12" from the "BC" provider,
// empty password, SunX509 key and trust managers, SSLContext "TLS"), with BouncyCastle added
// as Cli.scala does, then GET tufrepo.url + "/api/v1/user_repo/root.json" (libtuf
// TufServerHttpClient.scala: uri + uriPath + path).
//
// The one difference: garage-sign hands that SSLContext's managers to Netty's JDK engine
// through sttp; here HttpsURLConnection uses the same JSSE engine directly.
//
// Usage: java GarageSignTls ZIP [--no-client-cert | --client-p12 FILE]
// Prints "status N" (the HTTP status) or "error CLASS: MESSAGE"; exits 0 either way, and 2
// when the zip is not what garage-sign accepts.

import java.io.InputStream;
import java.net.URI;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.SecureRandom;
import java.security.Security;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import org.bouncycastle.jce.provider.BouncyCastleProvider;

public class GarageSignTls {
  static byte[] entry(ZipFile zip, String name) throws Exception {
    ZipEntry e = zip.getEntry(name);
    if (e == null) {
      System.out.println("zip: no " + name);
      System.exit(2);
    }
    try (InputStream in = zip.getInputStream(e)) {
      return in.readAllBytes();
    }
  }

  static KeyStore pkcs12(Path file) throws Exception {
    KeyStore ks = KeyStore.getInstance("PKCS12", "BC");
    try (InputStream in = Files.newInputStream(file)) {
      ks.load(in, "".toCharArray());
    }
    return ks;
  }

  public static void main(String[] args) throws Exception {
    Security.addProvider(new BouncyCastleProvider());
    Path dir = Files.createTempDirectory("garage-sign");
    URI repo;
    Path client = dir.resolve("client_auth.p12");
    Path server = dir.resolve("server.p12");
    try (ZipFile zip = new ZipFile(args[0])) {
      entry(zip, "treehub.json"); // readTreehubConfig fails without it
      Files.write(client, entry(zip, "client_auth.p12"));
      Files.write(server, entry(zip, "server.p12"));
      repo = new URI(new String(entry(zip, "tufrepo.url"), StandardCharsets.UTF_8).trim());
    }
    boolean withClient = true;
    if (args.length > 1 && args[1].equals("--no-client-cert")) {
      withClient = false;
    } else if (args.length > 2 && args[1].equals("--client-p12")) {
      client = Path.of(args[2]);
    }
    try {
      KeyManager[] keyManagers = null;
      if (withClient) {
        KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509");
        kmf.init(pkcs12(client), "".toCharArray());
        keyManagers = kmf.getKeyManagers();
      }
      TrustManagerFactory tmf = TrustManagerFactory.getInstance("SunX509");
      tmf.init(pkcs12(server));
      SSLContext context = SSLContext.getInstance("TLS");
      context.init(keyManagers, tmf.getTrustManagers(), new SecureRandom());

      URL url = URI.create(repo.toString() + "/api/v1/user_repo/" + "root.json").toURL();
      HttpsURLConnection conn = (HttpsURLConnection) url.openConnection();
      conn.setSSLSocketFactory(context.getSocketFactory());
      conn.setConnectTimeout(10000);
      conn.setReadTimeout(10000);
      System.out.println("status " + conn.getResponseCode());
    } catch (Exception e) {
      System.out.println("error " + e.getClass().getName() + ": " + e.getMessage());
    }
  }
}
