use revolve::Schema;

#[derive(Schema)]
#[schema(collection = "bits", version = 1)]
union BitsV1 {
    int: u32,
    float: f32,
}

fn main() {}
