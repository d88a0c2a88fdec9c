//! rumqttc options from the shared broker config (`protocol::broker_config`): host, port,
//! credentials and TLS (CA, optional client certificate), the same for agent and controller.

use rumqttc::{MqttOptions, Transport};
use stationwatch_protocol::broker_config::{BrokerConfig, TlsReadError};
use stationwatch_protocol::mqtt::QoS;

/// The wire QoS as rumqttc's.
pub fn qos(q: QoS) -> rumqttc::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

/// Connection options for `client_id` on `broker`: credentials and TLS set; keepalive,
/// session, packet sizes and last will are the caller's. TLS files are read here, so call it
/// once per connection attempt (a renewed certificate is picked up on reconnect).
pub fn options(broker: &BrokerConfig, client_id: &str) -> Result<MqttOptions, TlsReadError> {
    // rustls needs a process-wide crypto provider; another part may have installed one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut o = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    if let Some(user) = &broker.username {
        o.set_credentials(user.clone(), broker.password.clone().unwrap_or_default());
    }
    if let Some(tls) = &broker.tls {
        let m = tls.read()?;
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca: m.ca,
                alpn: None,
                client_auth: m.client_auth,
            },
        ));
    }
    Ok(o)
}
