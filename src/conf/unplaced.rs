//! Equality that ignores where things were written, so that a reload can tell a
//! section that changed from one whose lines only moved (a comment added above
//! it): line numbers are kept in the conf for error messages, not for behaviour.

use super::acl::{Acl, Cond};
use super::app::AppConf;
use super::kv::KvConf;
use super::model::{Backend, Bind, Frontend, HttpRule, ServerConf, TcpRule, UseBackend};
use super::web::WebConf;

pub trait Unplaced: Clone + PartialEq {
    /// Sets every line number in `self` to 0.
    fn unplace(&mut self);

    /// Equal but for line numbers.
    fn same(&self, other: &Self) -> bool {
        let (mut a, mut b) = (self.clone(), other.clone());
        a.unplace();
        b.unplace();
        a == b
    }
}

impl<T: Unplaced> Unplaced for Vec<T> {
    fn unplace(&mut self) {
        self.iter_mut().for_each(T::unplace);
    }
}

impl<T: Unplaced> Unplaced for Option<T> {
    fn unplace(&mut self) {
        if let Some(t) = self {
            t.unplace();
        }
    }
}

impl Unplaced for Acl {
    fn unplace(&mut self) {
        self.line = 0;
    }
}

impl Unplaced for Cond {
    fn unplace(&mut self) {
        self.anon.unplace();
    }
}

impl Unplaced for TcpRule {
    fn unplace(&mut self) {
        self.line = 0;
        self.cond.unplace();
    }
}

impl Unplaced for HttpRule {
    fn unplace(&mut self) {
        self.line = 0;
        self.cond.unplace();
    }
}

impl Unplaced for UseBackend {
    fn unplace(&mut self) {
        self.line = 0;
        self.cond.unplace();
    }
}

impl Unplaced for Bind {
    fn unplace(&mut self) {
        self.line = 0;
    }
}

impl Unplaced for Frontend {
    fn unplace(&mut self) {
        self.line = 0;
        self.binds.unplace();
        self.tcp_rules.unplace();
        self.http.acls.unplace();
        self.http.use_backends.unplace();
        self.http.rules.unplace();
        self.hap.res_rules.unplace();
        self.hap.after_rules.unplace();
        if let Some(t) = &mut self.hap.stick_table {
            t.line = 0;
        }
    }
}

impl Unplaced for ServerConf {
    fn unplace(&mut self) {
        self.line = 0;
    }
}

impl Unplaced for Backend {
    fn unplace(&mut self) {
        self.line = 0;
        self.servers.unplace();
        if let Some(t) = &mut self.hap.stick_table {
            t.line = 0;
        }
        if let Some(c) = &mut self.hap.cookie {
            c.line = 0;
        }
    }
}

impl Unplaced for KvConf {
    fn unplace(&mut self) {
        (self.line, self.line_bind) = (0, 0);
    }
}

impl Unplaced for WebConf {
    fn unplace(&mut self) {
        (self.line, self.line_bind, self.line_root) = (0, 0, 0);
        for a in &mut self.apps {
            a.line = 0;
        }
    }
}

impl Unplaced for AppConf {
    fn unplace(&mut self) {
        (self.line, self.line_bind, self.line_kv_primary) = (0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> crate::conf::Conf {
        crate::conf::parse_conf("t.conf", text).unwrap()
    }

    #[test]
    fn moved_lines_are_the_same_a_changed_value_is_not() {
        let text = "frontend f\n    mode http\n    bind 127.0.0.1:0\n    acl a path_beg /a\n    use_backend b if a\n    http-request deny if { path /x }\n    default_backend b\nbackend b\n    mode http\n    server s 127.0.0.1:1\nkv k\n    bind 127.0.0.1:0\n";
        let a = load(text);
        let b = load(&format!("# a comment\n\n{text}"));
        assert_ne!(a.frontends, b.frontends, "the lines did move");
        assert!(a.frontends.same(&b.frontends));
        assert!(a.backends.same(&b.backends));
        assert!(a.kvs.same(&b.kvs));
        let c = load(&text.replace("/a\n", "/c\n").replace(":1\n", ":2\n"));
        assert!(!a.frontends.same(&c.frontends));
        assert!(!a.backends.same(&c.backends));
    }
}
